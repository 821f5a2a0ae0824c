// Artillery processor for bench/artillery.yml: HTTP log-in before the WebSocket opens, and
// unique client_msg_ids per message. Frames are built here as JSON strings so that ids stay
// JSON integers (a "{{ var }}" template inside a YAML object would make them strings).
'use strict';

async function call(base, path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(base + path, {
    method: 'POST',
    headers,
    body: JSON.stringify(body)
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function account(base, username, password) {
  const signup = await call(base, '/auth/signup', { username, password });
  if (signup.status !== 201 && signup.status !== 409) {
    throw new Error(`signup ${username}: HTTP ${signup.status} ${JSON.stringify(signup.body)}`);
  }
  const login = await call(base, '/auth/login', { username, password });
  if (login.status !== 200) {
    throw new Error(`login ${username}: HTTP ${login.status} ${JSON.stringify(login.body)}`);
  }
  return { id: login.body.user.id, token: login.body.access_token };
}

// connect.function: called with the WebSocket arguments before the connection is opened.
function loginAndPrepare(wsArgs, context, done) {
  const { httpBase, password } = context.vars;
  const pool = Number(context.vars.userPool) || 100;
  const n = Math.floor(Math.random() * pool);
  const names = [`art_${n}`, `art_${(n + 1) % pool}`];
  Promise.all(names.map((name) => account(httpBase, name, password)))
    .then(async ([me, peer]) => {
      const group = await call(
        httpBase, '/conversations', { member_ids: [peer.id], title: 'artillery' }, me.token
      );
      if (group.status !== 201) {
        throw new Error(`create group: HTTP ${group.status} ${JSON.stringify(group.body)}`);
      }
      context.vars.conversationId = group.body.id;
      context.vars.sent = 0;
      context.vars.authFrame = JSON.stringify({ type: 'auth', ref: 'a', token: me.token });
      context.vars.joinFrame = JSON.stringify({
        type: 'join', ref: 'j', conversation_id: group.body.id
      });
      done();
    })
    .catch(done);
}

// A message command with a fresh client_msg_id (the VU's id plus a counter) and its send time.
function nextMessage(context, events, done) {
  context.vars.sent += 1;
  const vu = String(context._uid || Math.random().toString(36).slice(2)).replace(/[^A-Za-z0-9_-]/g, '');
  context.vars.messageFrame = JSON.stringify({
    type: 'message',
    ref: context.vars.sent,
    conversation_id: context.vars.conversationId,
    client_msg_id: `${vu.slice(0, 40)}-${context.vars.sent}`,
    body: `t=${Date.now()} artillery`
  });
  return done();
}

module.exports = { loginAndPrepare, nextMessage };

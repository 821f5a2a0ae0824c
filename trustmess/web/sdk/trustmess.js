// TrustMess JavaScript SDK: one ES module, no build step, no dependencies.
//
// The client side of protocol/README.md: tokens with rotation (§11.2), first-frame socket
// auth (§1.2), re-auth before expiry (§1.3), reconnect by close code with jittered backoff (§7),
// resume with `since` and HTTP backfill (§9, §11.4), and an outbox of unanswered sends kept in
// localStorage so that a reload resends them with the same client_msg_id (§8).
// Documented for client authors in protocol/web-sdk.md.

/** Length in Unicode code points, as the server counts (protocol §2), not UTF-16 units. */
export function codePointLength(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/** A fresh client_msg_id: [A-Za-z0-9_-]{1,64}. */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An HTTP error answer: `status`, `code` (errors.py) and `field` when the server named one. */
export class ApiError extends Error {
  constructor(status, code, message, field, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

// Close codes (protocol §7) after which the SDK does not reconnect by itself.
const NO_RECONNECT = new Set([1000, 1008, 1009, 4006]);
// Refresh this long before the access token expires (a fifth of its life, at most a minute).
const REFRESH_MARGIN_MAX_MS = 60_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// A connection that stayed up this long resets the backoff (protocol §7).
const BACKOFF_RESET_MS = 60_000;
// A command unanswered this long means the connection is dead: close it and reconnect.
const COMMAND_TIMEOUT_MS = 10_000;
const TYPING_REPEAT_MS = 2_000;
const HISTORY_PAGE = 200;
// Errors after which a send is dropped from the outbox: resending cannot succeed (`blocked`:
// a direct conversation one side blocked, protocol §11.7; it may be unblocked, but a message
// sent days later, unseen, would surprise both).
const FINAL_SEND_ERRORS = new Set(["invalid", "too_large", "not_found", "forbidden", "blocked"]);

/**
 * A TrustMess session in the browser. Events (all CustomEvent, data in `detail`):
 * `state` ({state, code}), `hello`, `message`, `change`, `read`, `typing`, `conversation`,
 * `conversation_update`, `removed` (server events, in seq order per conversation, each once),
 * `contact`, `invitation` (people, protocol §11.7), `presence`,
 * `sent` (the stored message and `duplicate`), `send_failed`
 * ({conversation_id, client_msg_id, code, message}), `outbox` (the outbox changed),
 * `gap` ({conversation_id}: the SDK could not fill a gap; reload the conversation),
 * `session_ended` ({reason}: log in again; the 4001 close reason when the server gave one, such
 * as "password changed", else the refused refresh's error code or "network"). Any other server event is dispatched under its own
 * `type`, so features added to the server later reach listeners without a new SDK.
 */
export class TrustMess extends EventTarget {
  constructor({ baseUrl = location.origin, storage = localStorage, storageKey = "trustmess" } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.storage = storage;
    this.key = storageKey;
    this.state = "offline";
    this.limits = { max_frame_bytes: 65536, max_body_chars: 4000, replay_limit: 500 };
    this.userId = null;
    this._ws = null;
    this._wanted = false; // the caller asked to be connected
    this._attempt = 0;
    this._retryTimer = null;
    this._refreshTimer = null;
    this._upSince = 0;
    this._nextRef = 1;
    this._waiting = new Map(); // ref -> {resolve, reject, timer}
    this._cursor = new Map(); // conversation id -> highest seq applied with no gap below
    this._joined = new Set(); // joined on the current socket
    this._filling = new Map(); // conversation id -> buffered events while HTTP fills a gap
    this._acked = new Map(); // conversation id -> highest seq acked (sent or to send)
    this._typingSent = new Map();
    this._refreshing = null;
    this._endReason = null; // why the server closed the socket with 4001, while refreshing
    this._authFailures = 0;
    this._pingTimer = null;
    this._socketToken = null;
    this._db = null;
    this._inFlight = new Set(); // client_msg_ids sent on the current socket, unanswered
    this._onOnline = () => this._online();
    this._onOffline = () => this._offline();
  }

  // --- tokens (protocol §11.2) -------------------------------------------------------------

  /** The stored session ({access_token, refresh_token, expires_at, user}) or null. */
  get session() {
    const raw = this.storage.getItem(`${this.key}:session`);
    return raw ? JSON.parse(raw) : null;
  }

  get user() {
    return this.session?.user ?? null;
  }

  async _store(tokens) {
    // Stored before anything else happens with them: the old refresh token is spent.
    const session = {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      issued_at: Date.now(),
      expires_at: Date.now() + tokens.expires_in * 1000,
      user: tokens.user,
    };
    this.storage.setItem(`${this.key}:session`, JSON.stringify(session));
    await this._durable(session);
    this.userId = tokens.user.id;
    this._scheduleRefresh();
    return session;
  }

  // The session is also kept in IndexedDB, whose transactions every tab sees in commit order:
  // Chromium propagates localStorage writes between tabs' processes asynchronously, so a tab
  // that takes the refresh lock right after another could still read the spent refresh token
  // there (and a reuse revokes the session). localStorage stays the fast synchronous copy.
  _database() {
    if (typeof indexedDB === "undefined") return Promise.resolve(null);
    this._db ??= new Promise((resolve) => {
      const request = indexedDB.open(this.key, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("kv");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => resolve(null); // private modes without IndexedDB
    });
    return this._db;
  }

  /** Write (or with null, delete) the durable copy; resolves once committed. */
  async _durable(session) {
    const db = await this._database();
    if (!db) return;
    await new Promise((resolve) => {
      const tx = db.transaction("kv", "readwrite");
      const store = tx.objectStore("kv");
      if (session) store.put(session, "session");
      else store.delete("session");
      tx.oncomplete = tx.onerror = tx.onabort = () => resolve();
    });
  }

  /** The committed session (IndexedDB), copied to localStorage; else localStorage's. */
  async _latestSession() {
    const db = await this._database();
    if (!db) return this.session;
    const found = await new Promise((resolve) => {
      const request = db.transaction("kv").objectStore("kv").get("session");
      request.onsuccess = () => resolve(request.result ?? null);
      request.onerror = () => resolve(undefined);
    });
    // None there: a session stored before this copy existed (or IndexedDB failed).
    if (!found) return this.session;
    this.storage.setItem(`${this.key}:session`, JSON.stringify(found));
    return found;
  }

  async signup(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this._fetch("POST", "/auth/signup", body, null);
  }

  async login(username, password) {
    const tokens = await this._fetch("POST", "/auth/login", { username, password }, null);
    await this._store(tokens);
    return tokens.user;
  }

  /** Ask for a reset link to be mailed (§11.6). `login` is a username or email address; the
   * answer is the same (202) whether or not it names an account, so there is nothing to return. */
  async requestPasswordReset(login) {
    await this._fetch("POST", "/auth/password-reset", { login }, null);
  }

  /** Set a new password with the token of a mailed reset link (`/reset-password#token=…`).
   * 422 field `token`: expired, used or unknown; field `password`: breaks the password rules. */
  async confirmPasswordReset(token, password) {
    await this._fetch("POST", "/auth/password-reset/confirm", { token, password }, null);
  }

  /** Redeem the token of a mailed verification link (`/verify-email#token=…`). 422 field
   * `token` when it is expired, used or unknown. */
  async verifyEmail(token) {
    await this._fetch("POST", "/auth/verify-email", { token }, null);
  }

  /** Revoke this device's refresh token family and forget the session. */
  async logout() {
    const session = this.session;
    this.disconnect();
    this._forget();
    if (session) {
      try {
        await this._fetch("POST", "/auth/logout", { refresh_token: session.refresh_token }, null);
      } catch {
        // Logged out locally whatever the server says; the tokens expire on their own.
      }
    }
  }

  _forget() {
    this.storage.removeItem(`${this.key}:session`);
    this._durable(null);
    clearTimeout(this._refreshTimer);
    this.userId = null;
    // The next login may be someone else: nothing of this user's streams carries over.
    this._cursor.clear();
    this._acked.clear();
    this._typingSent.clear();
  }

  _endSession(reason) {
    this.disconnect();
    this._forget();
    this._emit("session_ended", { reason });
  }

  /** A valid access token, refreshed first if it expires within the margin. */
  async accessToken() {
    const session = this.session;
    if (!session) throw new ApiError(401, "unauthenticated", "not logged in");
    if (session.expires_at - Date.now() > this._margin(session)) return session.access_token;
    return (await this.refresh()).access_token;
  }

  _margin(session) {
    const life = session.expires_at - session.issued_at;
    return Math.min(REFRESH_MARGIN_MAX_MS, Math.max(1000, life / 5));
  }

  /**
   * Exchange the refresh token for a new pair, once at a time: everything that needs a token
   * shares one refresh, and tabs of one browser take turns through a Web Lock (where the
   * browser has them), re-reading the stored tokens inside it, so two tabs never spend the same
   * refresh token (which would revoke the session).
   */
  refresh(refusedToken) {
    if (!this._refreshing) {
      const run = () => this._refreshOnce(refusedToken);
      const locked = navigator.locks
        ? navigator.locks.request(`${this.key}:refresh`, run)
        : run();
      this._refreshing = locked.finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  async _refreshOnce(refusedToken) {
    const session = await this._latestSession();
    if (!session) throw new ApiError(401, "unauthenticated", "not logged in");
    // Another tab refreshed while this one waited for the lock (or before this tab's timer
    // fired): use its tokens, for the socket too. A token the server refused (4001: its
    // session may have ended, §1.4) is refreshed however fresh it looks.
    const refused = refusedToken !== undefined && session.access_token === refusedToken;
    if (!refused && session.expires_at - Date.now() > this._margin(session)) {
      this._scheduleRefresh();
      this._extendSocket(session.access_token);
      return session;
    }
    let tokens;
    try {
      tokens = await this._fetch("POST", "/auth/refresh", { refresh_token: session.refresh_token }, null);
    } catch (error) {
      // A 401 ends the session; so does a lost answer: the server may have spent the token,
      // and retrying with it would revoke the whole family (§11.2). Rate limits and a full
      // password queue are answered before the token is looked at: try again later.
      if (error instanceof ApiError && (error.status === 429 || error.status === 503)) throw error;
      // Logged out meanwhile (this page, or another tab): nothing is left to end.
      if (!this.session) throw error;
      this._endSession(this._endReason ?? (error instanceof ApiError ? error.code : "network"));
      throw error;
    }
    const stored = await this._store(tokens);
    this._extendSocket(tokens.access_token);
    return stored;
  }

  /** Extend the open socket with a newer token (§1.3), so that it is not closed with 4002. */
  _extendSocket(token) {
    if (!this._ws || this.state !== "online" || token === this._socketToken) return;
    this._socketToken = token;
    this._command({ type: "auth", token }).catch(() => {});
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    const session = this.session;
    if (!session) return;
    const due = session.expires_at - this._margin(session) - Date.now();
    this._refreshTimer = setTimeout(() => {
      // Offline, the request could not reach the server: refresh when the socket comes back.
      if (navigator.onLine === false) return;
      this.refresh().catch(() => {});
    }, Math.max(0, due));
  }

  // --- HTTP ------------------------------------------------------------------------------

  /** An authenticated API call; a 401 token_expired is refreshed and retried once. */
  async api(method, path, body) {
    const token = await this.accessToken();
    try {
      return await this._fetch(method, path, body, token);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      if (error.code !== "token_expired") {
        this._endSession(error.code);
        throw error;
      }
      const fresh = await this.refresh();
      return this._fetch(method, path, body, fresh.access_token);
    }
  }

  async _fetch(method, path, body, token) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined && body !== null) headers["Content-Type"] = "application/json";
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined || body === null ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = data?.error ?? { code: "internal", message: `HTTP ${response.status}` };
      throw new ApiError(
        response.status,
        error.code,
        error.message,
        error.field,
        Number(response.headers.get("Retry-After")) || undefined,
      );
    }
    return data;
  }

  /** History page of a conversation (protocol §11.4): {items, has_more}. */
  history(conversationId, { before, after, limit = 50 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== undefined) query.set("before", String(before));
    if (after !== undefined) query.set("after", String(after));
    return this.api("GET", `/conversations/${conversationId}/messages?${query}`);
  }

  // --- the socket ------------------------------------------------------------------------

  /** Connect (and stay connected, reconnecting as §7 says) until disconnect(). */
  connect() {
    const session = this.session;
    if (!session) throw new ApiError(401, "unauthenticated", "not logged in");
    this.userId = session.user.id;
    this._wanted = true;
    this._attempt = 0;
    addEventListener("online", this._onOnline);
    addEventListener("offline", this._onOffline);
    this._scheduleRefresh();
    this._open();
  }

  /** Close the socket and stop reconnecting. The outbox is kept. */
  disconnect() {
    this._wanted = false;
    removeEventListener("online", this._onOnline);
    removeEventListener("offline", this._onOffline);
    clearTimeout(this._retryTimer);
    this._drop(1000, "client closed");
    this._setState("offline");
  }

  /** Reconnect now (after a 4006 replacement, or a user's "retry"). */
  reconnect() {
    this._wanted = true;
    this._attempt = 0;
    clearTimeout(this._retryTimer);
    this._drop(1000, "reconnecting");
    this._open();
  }

  _setState(state, code) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state, code });
  }

  async _open() {
    clearTimeout(this._retryTimer);
    if (!this._wanted || this._ws) return;
    if (navigator.onLine === false) {
      this._setState("reconnecting");
      return; // the `online` event opens it
    }
    this._setState(this.state === "online" || this.state === "reconnecting" ? "reconnecting" : "connecting");
    let token;
    try {
      token = await this.accessToken();
    } catch {
      if (this.session) this._retry(); // a rate-limited refresh: try again later
      return;
    }
    if (!this._wanted || this._ws) return;
    const url = new URL("/ws", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    this._ws = ws;
    this._joined = new Set();
    this._inFlight = new Set();
    this._socketToken = token;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", ref: "auth", token }));
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
  }

  _drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this._failWaiting();
  }

  _failWaiting() {
    for (const [, waiter] of this._waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(new ApiError(0, "disconnected", "the connection closed"));
    }
    this._waiting.clear();
    clearInterval(this._pingTimer);
  }

  async _closed(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._failWaiting();
    if (Date.now() - this._upSince > BACKOFF_RESET_MS && this._upSince) this._attempt = 0;
    this._upSince = 0;
    if (!this._wanted) return;
    if (code === 4006) {
      this._setState("replaced", code); // reconnect() on the user's action only
      return;
    }
    if (NO_RECONNECT.has(code)) {
      this._setState("failed", code);
      return;
    }
    this._setState("reconnecting", code);
    if (code === 4001 || code === 4002) {
      // The token was refused or ran out: a new one, then reconnect without waiting. After a
      // 4001 whose session ended the refresh is refused, and the session ends here, with the
      // close reason (§1.4: "password changed", "session ended"…) as `session_ended`'s reason.
      this._endReason = code === 4001 ? reason || null : null;
      try {
        await this.refresh(this._socketToken);
      } catch {
        if (!this.session) {
          // Ended by the refused refresh (session_ended is out), or the stored session is gone
          // because another tab logged out: then this tab's session ends here.
          if (this._wanted) this._endSession(this._endReason ?? "logged out");
          return;
        }
      } finally {
        this._endReason = null;
      }
      if (code === 4001 && this._authFailures++ > 2) return this._setState("failed", code);
      this._open();
      return;
    }
    this._retry();
  }

  _retry() {
    // Full jitter: a random delay in [0, min(30 s, 0.5 s × 2^attempt)] (protocol §7).
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this._attempt);
    this._attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), Math.random() * ceiling);
  }

  _online() {
    if (!this._wanted) return;
    this._attempt = 0;
    if (!this._ws) this._open();
    // The token may have come due while offline.
    this._scheduleRefresh();
  }

  _offline() {
    // The socket would go on looking open until a ping times out: end it now, and come back
    // (and resume) on `online`.
    if (!this._wanted) return;
    this._drop(1000, "offline");
    this._setState("reconnecting");
  }

  _receive(ws, data) {
    if (ws !== this._ws) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello":
        return this._hello(frame);
      case "reply":
      case "error":
        return this._answer(frame);
      case "message":
      case "change":
        return this._entry(frame);
      case "conversation":
        this._emit("conversation", frame);
        this._subscribePresence();
        if (this._cursor.has(frame.id)) return;
        this.watch(frame.id, 0);
        return;
      case "removed":
        this._cursor.delete(frame.conversation_id);
        this._joined.delete(frame.conversation_id);
        this._emit("removed", frame);
        return;
      case "contact":
        this._emit("contact", frame);
        // A new contact's presence is not sent by itself (§4.1 "Not new people").
        if (frame.change === "accepted") this._subscribePresence();
        return;
      default:
        // read, typing, conversation_update, and anything a later server adds.
        this._emit(frame.type, frame);
    }
  }

  _hello(frame) {
    this.limits = { ...this.limits, ...frame.limits };
    this.userId = frame.user_id;
    this._authFailures = 0;
    this._upSince = Date.now();
    this._setState("online");
    this._emit("hello", frame);
    // A liveness check of our own: a ping command every heartbeat; no answer → reconnect.
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(
      () => this._command({ type: "ping" }).catch(() => {}),
      Math.max(5, frame.heartbeat_s ?? 30) * 1000,
    );
    this._subscribePresence();
    for (const cid of this._cursor.keys()) this._join(cid);
    for (const [cid, seq] of this._acked) this._sendAck(cid, seq);
    this._flushOutbox();
  }

  /**
   * Presence (§3 `presence`, §4.1): subscribe this connection and hand the snapshot to
   * listeners as `presence` events, the same shape as the live ones. Sent after every hello,
   * and after a `conversation` or `contact` `accepted` event (new people).
   */
  _subscribePresence() {
    this._command({ type: "presence" })
      .then((data) => {
        for (const user of data.users ?? []) this._emit("presence", { type: "presence", ...user });
      })
      .catch(() => {}); // unavailable (or an older server without presence): nothing shown
  }

  /** Send a command with a ref; resolves with the reply's data, rejects with the error. */
  _command(frame, timeoutMs = COMMAND_TIMEOUT_MS) {
    const ws = this._ws;
    if (!ws || this.state !== "online") {
      return Promise.reject(new ApiError(0, "disconnected", "not connected"));
    }
    const ref = this._nextRef++;
    const text = JSON.stringify({ ...frame, ref });
    if (new TextEncoder().encode(text).length > this.limits.max_frame_bytes) {
      // The server would close the connection with 1009 (§6).
      return Promise.reject(new ApiError(0, "too_large", "frame larger than the server allows"));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiting.delete(ref);
        reject(new ApiError(0, "timeout", "no answer"));
        if (this._ws === ws) {
          // A dead connection: drop it and resume on a new one.
          this._drop(4000, "no answer");
          this._setState("reconnecting");
          this._retry();
        }
      }, timeoutMs);
      this._waiting.set(ref, { resolve, reject, timer });
      ws.send(text);
    });
  }

  _answer(frame) {
    if (frame.ref === "auth") return; // hello answers auth; an error here precedes a 4001
    if (frame.ref === undefined || frame.ref === null) {
      if (frame.code === "rate_limited") {
        // Commands refused unread (§5): resend the outbox a little later.
        setTimeout(() => this._flushOutbox(), 1000);
      }
      return;
    }
    const waiter = this._waiting.get(frame.ref);
    if (!waiter) return;
    this._waiting.delete(frame.ref);
    clearTimeout(waiter.timer);
    if (frame.type === "reply") waiter.resolve(frame.data);
    else waiter.reject(new ApiError(0, frame.code, frame.message, frame.field));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- conversations and their streams (protocol §9) --------------------------------------

  /**
   * Follow a conversation's live stream from `since` (the highest seq the caller has, with no
   * gap below it). After every reconnect the SDK joins again with its own cursor, so the
   * caller receives every later `message` and `change` exactly once and in seq order.
   */
  watch(conversationId, since) {
    const known = this._cursor.get(conversationId);
    if (known === undefined || since > known) this._cursor.set(conversationId, since);
    if (this.state === "online" && !this._joined.has(conversationId)) this._join(conversationId);
  }

  unwatch(conversationId) {
    this._cursor.delete(conversationId);
    if (this._joined.delete(conversationId)) {
      this._command({ type: "leave", conversation_id: conversationId }).catch(() => {});
    }
  }

  /** The highest seq applied for a conversation (undefined if not watched). */
  cursor(conversationId) {
    return this._cursor.get(conversationId);
  }

  async _join(cid) {
    const ws = this._ws;
    this._joined.add(cid);
    // Events that arrive before the reply are buffered (a replay follows the reply).
    const since = this._cursor.get(cid);
    let reply;
    try {
      reply = await this._command({ type: "join", conversation_id: cid, since });
    } catch (error) {
      this._joined.delete(cid);
      if (error.code === "not_found") {
        this._cursor.delete(cid);
        this._emit("removed", { conversation_id: cid });
      }
      return;
    }
    if (ws !== this._ws) return;
    if (reply.last_seq < since) {
      // Our copy is not this server's history (§3 join): start over from the server's.
      this._cursor.set(cid, reply.last_seq);
      this._emit("gap", { conversation_id: cid });
      return;
    }
    if (!reply.resumed && reply.last_seq > this._cursor.get(cid)) {
      await this._fill(cid);
    }
  }

  _entry(frame) {
    const cid = frame.conversation_id;
    const cursor = this._cursor.get(cid);
    if (cursor === undefined) return; // not watched
    const buffer = this._filling.get(cid);
    if (buffer) {
      buffer.push(frame);
      return;
    }
    if (frame.seq <= cursor) return; // a duplicate
    if (frame.seq > cursor + 1) {
      // A gap (a `resumed: false` join, or a lost event): fill it over HTTP, then go on.
      this._filling.set(cid, [frame]);
      this._fill(cid);
      return;
    }
    this._apply(frame);
  }

  _apply(frame) {
    this._cursor.set(frame.conversation_id, frame.seq);
    if (frame.type === "message" || frame.type === undefined) {
      const message = { ...frame, type: "message" };
      if (message.sender_id === this.userId) this._settle(message.client_msg_id, message);
      this._emit("message", message);
    } else if (frame.type === "change") {
      this._emit("change", frame);
    }
  }

  async _fill(cid) {
    if (!this._filling.has(cid)) this._filling.set(cid, []);
    try {
      for (;;) {
        const after = this._cursor.get(cid);
        if (after === undefined) return;
        const page = await this.history(cid, { after, limit: HISTORY_PAGE });
        for (const item of page.items) {
          if (item.seq === this._cursor.get(cid) + 1) this._apply(item);
        }
        if (!page.has_more) break;
      }
    } catch {
      this._emit("gap", { conversation_id: cid });
    } finally {
      const buffered = this._filling.get(cid) ?? [];
      this._filling.delete(cid);
      buffered.sort((a, b) => a.seq - b.seq);
      for (const frame of buffered) {
        const cursor = this._cursor.get(cid);
        if (cursor !== undefined && frame.seq === cursor + 1) this._apply(frame);
      }
    }
  }

  // --- sending, the outbox (protocol §8) -------------------------------------------------

  get _outboxKey() {
    return `${this.key}:outbox:${this.userId ?? this.session?.user.id}`;
  }

  /** Unanswered sends, oldest first (kept across reconnects and page reloads). */
  outbox(conversationId) {
    const raw = this.storage.getItem(this._outboxKey);
    const all = raw ? JSON.parse(raw) : [];
    return conversationId === undefined ? all : all.filter((m) => m.conversation_id === conversationId);
  }

  _saveOutbox(entries) {
    this.storage.setItem(this._outboxKey, JSON.stringify(entries));
    this._emit("outbox", {});
  }

  /**
   * Send a message. It goes to the outbox first (localStorage) and is resent with the same
   * client_msg_id after every reconnect and reload until the server answers. Returns the
   * outbox entry; `sent` or `send_failed` follows. Throws on a body the server would refuse.
   */
  send(conversationId, body, { replyTo } = {}) {
    const text = body.trim();
    const length = codePointLength(text);
    if (length === 0) throw new ApiError(0, "invalid", "the message is empty", "body");
    if (length > this.limits.max_body_chars) {
      throw new ApiError(0, "too_large", `at most ${this.limits.max_body_chars} characters`, "body");
    }
    const entry = {
      conversation_id: conversationId,
      client_msg_id: newClientId(),
      body: text,
      reply_to: replyTo ?? null,
      created: Date.now(),
    };
    this._saveOutbox([...this.outbox(), entry]);
    this._typingSent.delete(conversationId);
    this._transmit(entry);
    return entry;
  }

  _flushOutbox() {
    for (const entry of this.outbox()) this._transmit(entry);
  }

  async _transmit(entry) {
    if (this.state !== "online" || this._inFlight.has(entry.client_msg_id)) return;
    const ws = this._ws;
    this._inFlight.add(entry.client_msg_id);
    const frame = {
      type: "message",
      conversation_id: entry.conversation_id,
      client_msg_id: entry.client_msg_id,
      body: entry.body,
    };
    if (entry.reply_to) frame.reply_to = entry.reply_to;
    try {
      const data = await this._command(frame);
      this._settle(entry.client_msg_id, { ...data, client_msg_id: entry.client_msg_id });
    } catch (error) {
      if (FINAL_SEND_ERRORS.has(error.code)) {
        this._saveOutbox(this.outbox().filter((m) => m.client_msg_id !== entry.client_msg_id));
        this._emit("send_failed", { ...entry, code: error.code, message: error.message });
      } else if (error.code === "rate_limited" && ws === this._ws) {
        setTimeout(() => this._transmit(entry), 1000);
      }
      // Anything else (disconnected, timeout, unavailable, internal): resent on reconnect.
    } finally {
      if (ws === this._ws) this._inFlight.delete(entry.client_msg_id);
    }
  }

  /** The reply or the own `message` event arrived: the send is done. */
  _settle(clientMsgId, data) {
    const entries = this.outbox();
    const entry = entries.find((m) => m.client_msg_id === clientMsgId);
    if (!entry) return;
    this._saveOutbox(entries.filter((m) => m.client_msg_id !== clientMsgId));
    // The message as stored: the reply may come before the `message` event.
    this._emit("sent", {
      id: data.id,
      conversation_id: entry.conversation_id,
      seq: data.seq,
      sender_id: this.userId,
      body: entry.body,
      reply_to: entry.reply_to,
      client_msg_id: clientMsgId,
      created_at: data.created_at,
      duplicate: data.duplicate ?? false,
    });
  }

  // --- changes, typing, read markers -----------------------------------------------------

  /** edit / delete / react / unreact (protocol §3.1), idempotent through client_change_id. */
  change(kind, conversationId, targetSeq, fields = {}) {
    if (kind === "edit") {
      const length = codePointLength(fields.body.trim());
      if (length === 0 || length > this.limits.max_body_chars) {
        return Promise.reject(new ApiError(0, length ? "too_large" : "invalid", "bad body", "body"));
      }
    }
    return this._command({
      type: kind,
      conversation_id: conversationId,
      target_seq: targetSeq,
      client_change_id: newClientId(),
      ...fields,
    });
  }

  edit(cid, seq, body) {
    return this.change("edit", cid, seq, { body });
  }

  delete(cid, seq) {
    return this.change("delete", cid, seq);
  }

  react(cid, seq, emoji) {
    return this.change("react", cid, seq, { emoji });
  }

  unreact(cid, seq, emoji) {
    return this.change("unreact", cid, seq, { emoji });
  }

  /** Call on every keystroke: at most one `start` per 2 s reaches the socket. */
  typing(conversationId, state = "start") {
    if (this.state !== "online") return;
    const last = this._typingSent.get(conversationId) ?? 0;
    if (state === "start" && Date.now() - last < TYPING_REPEAT_MS) return;
    if (state === "stop" && !last) return;
    this._typingSent.set(conversationId, state === "start" ? Date.now() : 0);
    this._command({ type: "typing", conversation_id: conversationId, state }).catch(() => {});
  }

  /** Mark everything up to `seq` read (cumulative; only a higher seq is sent). */
  ack(conversationId, seq) {
    if (seq <= (this._acked.get(conversationId) ?? 0)) return;
    this._acked.set(conversationId, seq);
    if (this.state === "online") this._sendAck(conversationId, seq);
  }

  _sendAck(cid, seq) {
    this._command({ type: "ack", conversation_id: cid, seq }).catch(() => {});
  }
}

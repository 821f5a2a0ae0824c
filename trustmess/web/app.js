// The TrustMess web client: plain DOM code on the SDK (/sdk/trustmess.js). No framework: the
// page is a few lists and forms, and each is updated where it changes.
import { ApiError, TrustMess, codePointLength } from "/sdk/trustmess.js";
import { $, describe, element, readAllPages } from "/ui.js";
import { setupPeople } from "/people.js";
import { sessionEndedMessage, setupSettings } from "/settings.js";

const sdk = new TrustMess();
window.trustmess = sdk; // for the browser console (and the browser tests' diagnostics)

const REACTIONS = ["👍", "❤️", "😂"];
const HISTORY_PAGE = 50;
const SEARCH_PAUSE_MS = 250;

const state = {
  me: null,
  conversations: new Map(), // id -> conversation object (protocol §4)
  openId: null,
  messages: new Map(), // seq -> message, of the open conversation
  hasOlder: false,
  loadingOlder: false,
  readBy: new Map(), // conversation id -> Map(user id -> read seq), from `read` events
  typing: new Map(), // user id -> timer, in the open conversation
  connectedBefore: false,
  presence: new Map(), // user id -> {status, last_seen}, from `presence` events
  elements: new Map(), // message key -> [signature, li]
};

// --- signed out ---------------------------------------------------------------------------

function showAuth(message = "", notice = "") {
  $("app").hidden = true;
  $("skip-link").hidden = true;
  $("auth").hidden = false;
  showAuthForms("login-form", "signup-form");
  $("auth-error").textContent = message;
  $("auth-notice").textContent = notice;
  $("login-form").elements.username.focus();
}

const AUTH_FORMS = ["login-form", "signup-form", "forgot-form", "reset-form"];

function showAuthForms(...shown) {
  for (const id of AUTH_FORMS) $(id).hidden = !shown.includes(id);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  await attempt(async () => {
    await sdk.login(form.elements.username.value.trim(), form.elements.password.value);
    form.reset();
    await enterApp();
  });
});

// The browser's own words for a bad username ("Please match the requested format.") do not
// say what the format is.
const newUsername = $("signup-form").elements.username;
newUsername.addEventListener("input", () =>
  newUsername.setCustomValidity(
    newUsername.validity.patternMismatch ? "Use 3 to 32 letters (a to z), digits, dots or underscores." : "",
  ),
);

$("signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { username, password, display_name } = event.target.elements;
  await attempt(async () => {
    await sdk.signup(username.value.trim(), password.value, display_name.value.trim());
    await sdk.login(username.value.trim(), password.value);
    event.target.reset();
    await enterApp();
  });
});

// --- mailed links (protocol §11.6) ---------------------------------------------------------

$("forgot-link").addEventListener("click", (event) => {
  event.preventDefault();
  showAuthForms("forgot-form");
  $("auth-error").textContent = "";
  $("auth-notice").textContent = "";
  const login = $("forgot-form").elements.login;
  login.value = $("login-form").elements.username.value.trim();
  login.focus();
});

$("forgot-cancel").addEventListener("click", () => showAuth());

$("forgot-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const login = event.target.elements.login;
  await attempt(async () => {
    await sdk.requestPasswordReset(login.value.trim());
    event.target.reset();
    // The server answers the same whether or not the name is an account's (no enumeration).
    showAuth("", "If an account matches, a mail with a reset link is on its way.");
  });
});

// The token of a mailed link: kept here, and taken out of the address bar at once (history,
// screenshots, a shared screen).
function takeLinkToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") ?? "";
  history.replaceState(null, "", location.pathname);
  return token;
}

function showPasswordReset(token) {
  $("app").hidden = true;
  $("auth").hidden = false;
  showAuthForms("reset-form");
  $("auth-notice").textContent = "";
  $("auth-error").textContent = token ? "" : "This link has no token: copy the whole link from the mail.";
  const form = $("reset-form");
  form.elements.password.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("auth-error").textContent = "";
    try {
      await sdk.confirmPasswordReset(token, form.elements.password.value);
    } catch (error) {
      if (error instanceof ApiError && error.field === "token") return offerNewLink();
      $("auth-error").textContent = describe(error);
      form.elements.password.focus();
      return;
    }
    form.reset();
    history.replaceState(null, "", "/");
    // Every session of the account ended with the reset, this device's too.
    await sdk.logout();
    showAuth("", "Your password is changed: log in with the new one.");
  });
}

function offerNewLink() {
  history.replaceState(null, "", "/");
  showAuthForms("forgot-form");
  $("auth-error").textContent =
    "This reset link has expired or was used already. Ask for a new one below.";
  $("forgot-form").elements.login.focus();
}

async function verifyFromLink(token) {
  history.replaceState(null, "", "/");
  let notice;
  try {
    await sdk.verifyEmail(token);
    notice = "Your email address is verified.";
  } catch (error) {
    notice =
      error instanceof ApiError && error.field === "token"
        ? "This verification link has expired or was used already. Ask for a new one in Settings."
        : describe(error);
  }
  if (sdk.session) {
    $("app-notice").textContent = notice;
    $("app-notice").hidden = false;
    await enterApp().catch((error) => showAuth(describe(error)));
  } else {
    showAuth("", notice);
  }
}

async function attempt(action) {
  $("auth-error").textContent = "";
  try {
    await action();
  } catch (error) {
    $("auth-error").textContent = describe(error);
  }
}

// --- signed in ----------------------------------------------------------------------------

async function enterApp() {
  state.me = sdk.user;
  $("auth").hidden = true;
  $("app").hidden = false;
  await loadConversations();
  sdk.connect();
  const fromHash = Number(/^#c(\d+)$/.exec(location.hash)?.[1]);
  if (fromHash && state.conversations.has(fromHash)) await openConversation(fromHash);
}

async function loadConversations() {
  const conversations = await readAllPages(sdk, "/conversations");
  state.conversations.clear();
  for (const conversation of conversations) addConversation(conversation);
  renderConversationList();
}

function addConversation(conversation) {
  state.conversations.set(conversation.id, conversation);
  // Live events of every conversation keep the list (unread, last message) current.
  sdk.watch(conversation.id, conversation.last_seq);
}

function titleOf(conversation) {
  if (conversation.title) return conversation.title;
  const others = conversation.members.filter((m) => m.id !== state.me.id);
  return others.map((m) => m.display_name).join(", ") || "Just you";
}

function nameOf(userId) {
  const conversation = state.conversations.get(state.openId);
  const member = conversation?.members.find((m) => m.id === userId);
  return member?.display_name ?? `user ${userId}`;
}

function renderConversationList() {
  const list = $("conversation-list");
  const sorted = [...state.conversations.values()].sort(
    (a, b) => activity(b).localeCompare(activity(a)) || b.id - a.id,
  );
  list.replaceChildren(
    ...sorted.map((conversation) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "conversation-item";
      button.dataset.id = conversation.id;
      if (conversation.id === state.openId) button.setAttribute("aria-current", "true");
      const title = element("span", "title", titleOf(conversation));
      const preview = element("span", "preview", previewOf(conversation.last_message));
      button.append(title, preview);
      if (conversation.unread > 0) button.append(element("span", "badge", String(conversation.unread)));
      // Read out as "Ada: Hello, 2 unread": the parts run together otherwise, and an aria-label
      // on the badge (a plain span) is not read at all.
      const unread = conversation.unread > 0 ? `, ${conversation.unread} unread` : "";
      button.setAttribute("aria-label", `${title.textContent}: ${preview.textContent}${unread}`);
      button.addEventListener("click", () => openConversation(conversation.id));
      item.append(button);
      return item;
    }),
  );
  $("no-conversations").hidden = sorted.length > 0;
}

function activity(conversation) {
  return conversation.last_message?.created_at ?? conversation.created_at;
}

function previewOf(message) {
  if (!message) return "No messages yet";
  if (message.deleted) return "Message deleted";
  const who = message.sender_id === state.me.id ? "You: " : "";
  return who + message.body.slice(0, 80);
}

// --- one conversation ---------------------------------------------------------------------

async function openConversation(id) {
  const conversation = state.conversations.get(id);
  if (!conversation) return;
  state.openId = id;
  state.messages = new Map();
  state.elements = new Map();
  state.typing.forEach(clearTimeout);
  state.typing.clear();
  $("message-list").replaceChildren();
  $("typing").textContent = "";
  $("conversation-notice").textContent = "";
  $("skip-link").hidden = false;
  history.replaceState(null, "", `#c${id}`);
  document.body.classList.add("show-conversation");
  $("conversation-title").textContent = titleOf(conversation);
  $("members-button").disabled = false;
  $("composer-input").disabled = false;
  $("send-button").disabled = false;
  renderMembers();
  renderConversationList();
  $("history-status").textContent = "Loading…";
  try {
    const page = await sdk.history(id, { limit: HISTORY_PAGE });
    if (state.openId !== id) return;
    for (const message of page.items) mergeMessage(message);
    state.hasOlder = page.has_more;
  } catch (error) {
    $("history-status").textContent = describe(error);
    return;
  }
  renderMessages();
  scrollToEnd();
  markRead();
  $("composer-input").focus();
  loadReceipts(id);
}

// Read receipts as they stand (protocol §11.4 step 7); `read` events keep them current.
async function loadReceipts(id) {
  const markers = await sdk.api("GET", `/conversations/${id}/read`).catch(() => null);
  if (!markers || state.openId !== id) return;
  if (!state.readBy.has(id)) state.readBy.set(id, new Map());
  const readers = state.readBy.get(id);
  for (const { user_id, read_seq } of markers.items) {
    readers.set(user_id, Math.max(readers.get(user_id) ?? 0, read_seq));
  }
  renderMessages();
}

function mergeMessage(item) {
  if (item.type === "change") return applyChange(item);
  const known = state.messages.get(item.seq);
  // A history page shows the message as it is now; a live event as it was sent.
  state.messages.set(item.seq, { ...known, ...item, reactions: item.reactions ?? known?.reactions ?? [] });
}

function applyChange(change) {
  const message = state.messages.get(change.target_seq);
  if (!message) return; // older than what is loaded: its page will show the current state
  if (change.kind === "edit") {
    message.body = change.body;
    message.edited_at = change.edited_at;
  } else if (change.kind === "delete") {
    message.deleted = true;
    message.body = null;
    message.reactions = [];
  } else {
    const reactions = message.reactions.filter((r) => r.emoji !== change.emoji);
    const old = message.reactions.find((r) => r.emoji === change.emoji);
    const me = change.user_id === state.me.id ? change.kind === "react" : (old?.me ?? false);
    if (change.count > 0) reactions.push({ emoji: change.emoji, count: change.count, me });
    message.reactions = reactions;
  }
}

async function loadOlder() {
  const id = state.openId;
  if (!id || !state.hasOlder || state.loadingOlder) return;
  state.loadingOlder = true;
  const box = $("messages");
  const fromBottom = box.scrollHeight - box.scrollTop;
  try {
    const lowest = Math.min(...state.messages.keys());
    const page = await sdk.history(id, { before: lowest, limit: HISTORY_PAGE });
    if (state.openId !== id) return;
    for (const message of page.items) mergeMessage(message);
    state.hasOlder = page.has_more;
    renderMessages();
    box.scrollTop = box.scrollHeight - fromBottom; // keep what the user was reading in place
  } finally {
    state.loadingOlder = false;
  }
}

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 60) loadOlder();
});

function renderMessages() {
  const id = state.openId;
  const list = $("message-list");
  const items = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  const wanted = [];
  for (const message of items) {
    const status = message.sender_id !== state.me.id ? "" : seenStatus(id, message.seq);
    wanted.push(messageElement(`s${message.seq}`, message, status));
  }
  for (const pending of sdk.outbox(id)) {
    const shown = items.some((m) => m.client_msg_id === pending.client_msg_id && m.sender_id === state.me.id);
    if (shown) continue;
    const message = { ...pending, sender_id: state.me.id, reactions: [], pending: true };
    wanted.push(messageElement(`p${pending.client_msg_id}`, message, "Sending…"));
  }
  // Move only what is out of place, so that focus inside a message survives an update.
  wanted.forEach((node, index) => {
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] ?? null);
  });
  while (list.children.length > wanted.length) list.lastElementChild.remove();
  $("history-status").textContent = state.hasOlder ? "Scroll up for earlier messages" : "Beginning of the conversation";
}

function messageElement(key, message, status) {
  const signature = JSON.stringify([message.body, message.deleted, message.edited_at, message.reactions, status]);
  const cached = state.elements.get(key);
  if (cached && cached[0] === signature) return cached[1];
  const mine = message.sender_id === state.me.id;
  const item = cached?.[1] ?? document.createElement("li");
  item.replaceChildren();
  item.className = `msg${mine ? " mine" : ""}${message.pending ? " pending" : ""}`;
  if (message.seq) item.dataset.seq = message.seq;
  item.dataset.clientMsgId = message.client_msg_id;
  const meta = element("p", "meta");
  meta.append(element("span", "sender", mine ? "You" : nameOf(message.sender_id)));
  if (message.created_at) {
    const time = element("time", "", sentAt(new Date(message.created_at)));
    time.dateTime = message.created_at;
    meta.append(" ", time);
  }
  item.append(meta);
  if (message.deleted) {
    item.append(element("p", "body deleted", "Message deleted"));
  } else {
    item.append(element("p", "body", message.body));
    if (message.edited_at) item.append(element("span", "edited", "(edited)"));
  }
  if (status) item.append(element("span", "status", status));
  if (!message.pending && !message.deleted) item.append(messageActions(message, mine));
  state.elements.set(key, [signature, item]);
  return item;
}

// The time alone for today's messages; with the date for older ones ("16:20" last week misleads).
function sentAt(date) {
  const time = { hour: "2-digit", minute: "2-digit" };
  if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString([], time);
  return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function messageActions(message, mine) {
  const actions = element("div", "actions");
  const label = `message ${message.seq}`;
  for (const emoji of REACTIONS) {
    const reaction = message.reactions.find((r) => r.emoji === emoji);
    const button = element("button", "reaction", reaction ? `${emoji} ${reaction.count}` : emoji);
    button.type = "button";
    button.setAttribute("aria-pressed", String(Boolean(reaction?.me)));
    button.setAttribute("aria-label", `React ${emoji} to ${label}${reaction ? ` (${reaction.count})` : ""}`);
    button.addEventListener("click", () =>
      (reaction?.me ? sdk.unreact : sdk.react).call(sdk, state.openId, message.seq, emoji).catch(report),
    );
    actions.append(button);
  }
  if (mine) {
    const edit = element("button", "", "Edit");
    edit.type = "button";
    edit.setAttribute("aria-label", `Edit ${label}`);
    edit.addEventListener("click", () => {
      const body = prompt("Edit message", message.body);
      if (body !== null && body.trim() && body.trim() !== message.body) {
        sdk.edit(state.openId, message.seq, body).catch(report);
      }
    });
    const remove = element("button", "", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete ${label}`);
    remove.addEventListener("click", () => {
      if (confirm("Delete this message for everyone?")) sdk.delete(state.openId, message.seq).catch(report);
    });
    actions.append(edit, remove);
  }
  return actions;
}

function report(error) {
  $("connection").textContent = describe(error);
}

// "Seen" in a direct conversation; in a group, by whom: one reader is not everyone.
function seenStatus(conversationId, seq) {
  const readers = [...(state.readBy.get(conversationId) ?? [])]
    .filter(([userId, readSeq]) => userId !== state.me.id && readSeq >= seq)
    .map(([userId]) => nameOf(userId));
  if (!readers.length) return "Sent";
  const conversation = state.conversations.get(conversationId);
  if (conversation.kind !== "group") return "Seen";
  const others = conversation.members.length - 1;
  if (others > 1 && readers.length >= others) return "Seen by everyone";
  if (readers.length > 3) return `Seen by ${readers.slice(0, 2).join(", ")} and ${readers.length - 2} others`;
  return `Seen by ${readers.join(", ")}`;
}

function atEnd() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function markRead() {
  const conversation = state.conversations.get(state.openId);
  if (!conversation || document.visibilityState !== "visible") return;
  const newest = Math.max(0, ...state.messages.keys(), conversation.last_seq);
  if (newest > 0) sdk.ack(conversation.id, newest);
  if (conversation.unread) {
    conversation.unread = 0;
    renderConversationList();
  }
}

document.addEventListener("visibilitychange", markRead);

function renderMembers() {
  const conversation = state.conversations.get(state.openId);
  if (!conversation) return;
  const group = conversation.kind === "group";
  const owner = conversation.members.some((m) => m.id === state.me.id && m.role === "owner");
  $("member-list").replaceChildren(
    ...conversation.members.map((member) => {
      const notes = [member.id === state.me.id && "you", member.role === "owner" && "owner"].filter(Boolean);
      const about = notes.length ? ` (${notes.join(", ")})` : "";
      const item = element("li", "member", `${member.display_name} @${member.username}${about}`);
      const seen = presenceText(member.id);
      if (seen) item.append(" ", element("span", `presence ${state.presence.get(member.id).status}`, seen));
      if (group && owner && member.id !== state.me.id) {
        const remove = element("button", "", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove ${member.display_name} from the group`);
        remove.addEventListener("click", () =>
          sdk.api("DELETE", `/conversations/${conversation.id}/members/${member.id}`).catch(report),
        );
        item.append(" ", remove);
      }
      return item;
    }),
  );
  $("group-tools").hidden = !group;
}

// Groups: add people (search as in People), leave.
let addTimer = null;
$("add-member-search").addEventListener("input", () => {
  clearTimeout(addTimer);
  addTimer = setTimeout(searchToAdd, SEARCH_PAUSE_MS);
});
$("add-member-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(addTimer);
  searchToAdd();
});

async function searchToAdd() {
  const query = $("add-member-search").value.trim();
  const conversation = state.conversations.get(state.openId);
  if (!query || !conversation) return $("add-member-results").replaceChildren();
  const page = await sdk.api("GET", `/users?q=${encodeURIComponent(query)}&limit=20`).catch(report);
  if (!page) return;
  const members = new Set(conversation.members.map((m) => m.id));
  $("add-member-results").replaceChildren(
    ...page.items
      .filter((user) => !members.has(user.id))
      .map((user) => {
        const add = element("button", "", `Add ${user.display_name} @${user.username}`);
        add.type = "button";
        add.addEventListener("click", async () => {
          const updated = await sdk
            .api("POST", `/conversations/${conversation.id}/members`, { user_ids: [user.id] })
            .catch(report);
          if (!updated) return;
          showInvited(updated, [user]);
          if (updated.version > conversation.version) Object.assign(conversation, { members: updated.members, version: updated.version });
          $("add-member-search").value = "";
          $("add-member-results").replaceChildren();
          renderMembers();
        });
        const item = element("li", "person");
        item.append(add);
        return item;
      }),
  );
}

$("leave-button").addEventListener("click", () => {
  const id = state.openId;
  if (id && confirm("Leave this group?")) {
    sdk.api("DELETE", `/conversations/${id}/members/${state.me.id}`).catch(report);
  }
});

$("members-button").addEventListener("click", () => {
  const panel = $("members-panel");
  panel.hidden = !panel.hidden;
  $("members-button").setAttribute("aria-expanded", String(!panel.hidden));
});

// Escape closes the panel, as it closes the dialogs.
$("members-panel").addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  $("members-panel").hidden = true;
  $("members-button").setAttribute("aria-expanded", "false");
  $("members-button").focus();
});

$("back-button").addEventListener("click", () => {
  document.body.classList.remove("show-conversation");
  $("conversation-list").querySelector(`[data-id="${state.openId}"]`)?.focus();
});

// --- composing ----------------------------------------------------------------------------

const input = $("composer-input");

// On a phone the message box may be hidden behind the list: show the conversation first.
$("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.body.classList.add("show-conversation");
  input.focus();
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

input.addEventListener("input", () => {
  const length = codePointLength(input.value.trim());
  const max = sdk.limits.max_body_chars;
  $("composer-count").textContent = length > max - 200 ? `${length} / ${max}` : "";
  if (state.openId && input.value.trim()) sdk.typing(state.openId);
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!state.openId || !input.value.trim()) return;
  try {
    sdk.send(state.openId, input.value);
  } catch (error) {
    $("composer-count").textContent = describe(error);
    return;
  }
  input.value = "";
  $("composer-count").textContent = "";
  renderMessages();
  scrollToEnd();
});

// --- live events --------------------------------------------------------------------------

sdk.addEventListener("message", ({ detail: message }) => {
  const conversation = state.conversations.get(message.conversation_id);
  if (!conversation) return;
  conversation.last_seq = Math.max(conversation.last_seq, message.seq);
  conversation.last_message = message;
  const open = message.conversation_id === state.openId;
  if (message.sender_id !== state.me.id && !(open && document.visibilityState === "visible")) {
    conversation.unread += 1;
  }
  renderConversationList();
  if (!open) return;
  const follow = atEnd() || message.sender_id === state.me.id;
  mergeMessage(message);
  clearTyping(message.sender_id);
  renderMessages();
  if (follow) scrollToEnd();
  markRead();
});

sdk.addEventListener("change", ({ detail: change }) => {
  const conversation = state.conversations.get(change.conversation_id);
  if (conversation) conversation.last_seq = Math.max(conversation.last_seq, change.seq);
  // The list's preview shows the last message: an edit or a deletion of it must show there too
  // (a deleted message's words must not linger in the list).
  const last = conversation?.last_message;
  if (last && last.seq === change.target_seq && (change.kind === "edit" || change.kind === "delete")) {
    conversation.last_message =
      change.kind === "edit" ? { ...last, body: change.body } : { ...last, deleted: true, body: null };
    renderConversationList();
  }
  if (change.conversation_id !== state.openId) return;
  applyChange(change);
  renderMessages();
});

sdk.addEventListener("outbox", () => {
  if (state.openId) renderMessages();
});

sdk.addEventListener("sent", ({ detail }) => {
  if (detail.conversation_id !== state.openId || state.messages.has(detail.seq)) return;
  const { duplicate, ...message } = detail;
  mergeMessage(message);
  renderMessages();
});

sdk.addEventListener("send_failed", ({ detail }) => {
  $("composer-count").textContent = `Not sent: ${detail.message}`;
});

sdk.addEventListener("read", ({ detail: read }) => {
  if (!state.readBy.has(read.conversation_id)) state.readBy.set(read.conversation_id, new Map());
  state.readBy.get(read.conversation_id).set(read.user_id, read.seq);
  if (read.conversation_id === state.openId) renderMessages();
});

sdk.addEventListener("typing", ({ detail: typing }) => {
  if (typing.conversation_id !== state.openId) return;
  clearTyping(typing.user_id);
  if (typing.state === "start") {
    // The server sends `stop` after 6 s without a new start; this is only a safety net.
    state.typing.set(typing.user_id, setTimeout(() => clearTyping(typing.user_id), 8000));
  }
  renderTyping();
});

function clearTyping(userId) {
  clearTimeout(state.typing.get(userId));
  if (state.typing.delete(userId)) renderTyping();
}

function renderTyping() {
  const names = [...state.typing.keys()].map(nameOf);
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// Presence: shown in the members panel, for the people the server lets us see.
function presenceText(userId) {
  const presence = state.presence.get(userId);
  if (!presence || userId === state.me.id || presence.status === "hidden") return "";
  if (presence.status === "online") return "online";
  if (!presence.last_seen) return "offline";
  const when = new Date(presence.last_seen).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  return `last seen ${when}`;
}

sdk.addEventListener("presence", ({ detail }) => {
  state.presence.set(detail.user_id, { status: detail.status, last_seen: detail.last_seen });
  if (state.openId) renderMembers();
});

sdk.addEventListener("conversation", ({ detail: conversation }) => {
  const { type, ...fields } = conversation;
  addConversation(fields);
  renderConversationList();
});

sdk.addEventListener("conversation_update", async ({ detail: update }) => {
  const conversation = state.conversations.get(update.conversation_id);
  if (!conversation || update.version <= conversation.version) return;
  if (update.version === conversation.version + 1) {
    conversation.version = update.version;
    if (update.change === "title") conversation.title = update.title;
    if (update.change === "members_added") conversation.members.push(...update.members);
    if (update.change === "members_removed") {
      conversation.members = conversation.members
        .filter((m) => !update.user_ids.includes(m.id))
        .map((m) => ({ ...m, role: m.id === update.owner_id ? "owner" : "member" }));
    }
  } else {
    Object.assign(conversation, await sdk.api("GET", `/conversations/${conversation.id}`));
  }
  renderConversationList();
  if (conversation.id === state.openId) {
    $("conversation-title").textContent = titleOf(conversation);
    renderMembers();
  }
});

sdk.addEventListener("removed", ({ detail }) => {
  sdk.unwatch(detail.conversation_id);
  const gone = state.conversations.get(detail.conversation_id);
  state.conversations.delete(detail.conversation_id);
  if (gone && state.openId === detail.conversation_id) closeConversation(`You are no longer in “${titleOf(gone)}”.`);
  renderConversationList();
});

// The open conversation was left (or we were removed): nothing of it stays usable, the
// members panel and its Leave button included, and the keyboard focus is not lost with it.
function closeConversation(notice) {
  state.openId = null;
  state.messages = new Map();
  state.elements = new Map();
  state.typing.forEach(clearTimeout);
  state.typing.clear();
  $("conversation-title").textContent = "No conversation open";
  $("conversation-notice").textContent = notice;
  $("skip-link").hidden = true;
  $("message-list").replaceChildren();
  $("history-status").textContent = "";
  $("typing").textContent = "";
  $("members-panel").hidden = true;
  $("members-button").setAttribute("aria-expanded", "false");
  $("composer-input").disabled = $("send-button").disabled = $("members-button").disabled = true;
  history.replaceState(null, "", location.pathname);
  const focus = document.activeElement;
  if (focus === document.body || $("conversation").contains(focus)) {
    // The back button on a phone (the list is hidden), else the conversation list's tab.
    ($("back-button").offsetParent ? $("back-button") : $("tab-chats")).focus();
  }
}

sdk.addEventListener("gap", async ({ detail }) => {
  if (detail.conversation_id === state.openId) await openConversation(state.openId);
});

const STATES = {
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  online: "",
  offline: "Offline",
  failed: "Disconnected: reload the page to try again.",
  replaced: "This account was opened in another window.",
};

sdk.addEventListener("state", ({ detail }) => {
  const line = $("connection");
  line.textContent = STATES[detail.state] ?? detail.state;
  line.dataset.state = detail.state;
  if (detail.state === "replaced") {
    const again = element("button", "", "Reconnect here");
    again.type = "button";
    again.addEventListener("click", () => sdk.reconnect());
    line.append(" ", again);
  }
  if (detail.state === "online") {
    if (state.connectedBefore) refreshConversations().catch(() => {});
    state.connectedBefore = true;
    if (state.openId) markRead();
  }
});

// After a reconnect: conversation events are not replayed (protocol §9 step 8), so titles,
// members, and conversations created or left meanwhile come from the list. Messages do not:
// the SDK resumes each stream from its own cursor.
async function refreshConversations() {
  const fresh = new Map();
  for (const conversation of await readAllPages(sdk, "/conversations")) fresh.set(conversation.id, conversation);
  for (const [id, conversation] of fresh) {
    const known = state.conversations.get(id);
    if (!known) addConversation(conversation);
    else Object.assign(known, { title: conversation.title, members: conversation.members, version: conversation.version });
  }
  for (const id of [...state.conversations.keys()]) {
    if (!fresh.has(id)) sdk.dispatchEvent(new CustomEvent("removed", { detail: { conversation_id: id } }));
  }
  renderConversationList();
  if (state.openId && fresh.has(state.openId)) {
    $("conversation-title").textContent = titleOf(state.conversations.get(state.openId));
    renderMembers();
  }
}

sdk.addEventListener("session_ended", ({ detail }) => {
  state.conversations.clear();
  state.openId = null;
  showAuth(sessionEndedMessage(detail.reason));
});

// --- people: search, direct and group conversations ---------------------------------------

let searchTimer = null;
const picked = new Map(); // user id -> user, ticked for a new group

$("user-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  // After a pause in typing, not on every keystroke (protocol §11.1).
  searchTimer = setTimeout(search, SEARCH_PAUSE_MS);
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  search();
});

async function search() {
  $("search-error").textContent = "";
  const query = $("user-search").value.trim();
  if (!query) {
    $("search-results").replaceChildren();
    return;
  }
  let page;
  try {
    page = await sdk.api("GET", `/users?q=${encodeURIComponent(query)}&limit=20`);
  } catch (error) {
    $("search-results").replaceChildren(element("li", "error", describe(error)));
    return;
  }
  const people = page.items.filter((user) => user.id !== state.me.id);
  if (!people.length) {
    $("search-results").replaceChildren(element("li", "hint", "Nobody found."));
    return;
  }
  $("search-results").replaceChildren(
    ...people.map((user) => {
      const item = element("li", "person");
      const chat = element("button", "", `Chat with ${user.display_name} @${user.username}`);
      chat.type = "button";
      chat.addEventListener("click", () => startConversation([user]));
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = picked.has(user.id);
      box.setAttribute("aria-label", `Add ${user.display_name} to a new group`);
      box.addEventListener("change", () => (box.checked ? picked.set(user.id, user) : picked.delete(user.id)));
      // A bare checkbox says nothing to the eye; its aria-label names the person for the ear.
      const pick = element("label", "pick");
      pick.append(box, " Group");
      item.append(chat, pick, peopleTab.toolsFor(user));
      return item;
    }),
  );
}

$("group-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const title = event.target.elements.title.value.trim();
  if (!picked.size) {
    $("search-error").textContent = "Tick the people to add to the group first.";
    return;
  }
  startConversation([...picked.values()], title || undefined).then(() => {
    picked.clear();
    // The results may still be shown: untick them too, or a tick would look made and be none.
    for (const box of $("search-results").querySelectorAll('input[type="checkbox"]')) box.checked = false;
    event.target.reset();
  });
});

async function startConversation(users, title) {
  $("search-error").textContent = "";
  const body = { member_ids: users.map((user) => user.id) };
  if (title) body.title = title;
  try {
    const conversation = await sdk.api("POST", "/conversations", body);
    await showConversation(conversation);
    showInvited(conversation, users);
  } catch (error) {
    $("search-error").textContent = describe(error);
  }
}

// People whose `group_policy` asks for consent are invited, not added (protocol §11.7): say so,
// or the creator wonders where they went.
function showInvited(answer, users) {
  const names = users.filter((user) => answer.invited?.includes(user.id)).map((user) => user.display_name);
  if (!names.length) return;
  const who = names.length === 1 ? `${names[0]} is` : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are`;
  $("conversation-notice").textContent = `${who} invited: they join the group when they accept.`;
}

// A conversation the server just answered with (created, found again, or joined).
async function showConversation(conversation) {
  if (!state.conversations.has(conversation.id)) addConversation(conversation);
  selectTab("chats");
  await openConversation(conversation.id);
}

// --- tabs (arrow keys move between them, as the ARIA tabs pattern says) --------------------

function selectTab(name) {
  for (const tab of ["chats", "people"]) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  document.body.classList.remove("show-conversation");
}

$("tab-chats").addEventListener("click", () => selectTab("chats"));
$("tab-people").addEventListener("click", () => {
  selectTab("people");
  $("user-search").focus();
});
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const next = tab.id === "tab-chats" ? "people" : "chats";
    selectTab(next);
    $(`tab-${next}`).focus();
  });
}

// --- profile and logout -------------------------------------------------------------------

$("profile-button").addEventListener("click", async () => {
  const me = await sdk.api("GET", "/users/me").catch(report);
  if (!me) return;
  const form = $("profile-form");
  $("profile-username").textContent = `@${me.username}`;
  form.elements.display_name.value = me.display_name;
  form.elements.bio.value = me.bio;
  $("profile-error").textContent = "";
  $("profile-dialog").showModal();
});

$("profile-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { display_name, bio } = event.target.elements;
  try {
    await sdk.api("PATCH", "/users/me", { display_name: display_name.value.trim(), bio: bio.value });
    $("profile-dialog").close();
  } catch (error) {
    $("profile-error").textContent = describe(error);
  }
});

$("profile-cancel").addEventListener("click", () => $("profile-dialog").close());

// Log out of this device, then the login screen (with `notice`, e.g. after deleting the account).
async function signOut(notice = "") {
  await sdk.logout();
  state.conversations.clear();
  state.readBy.clear();
  state.connectedBefore = false;
  state.openId = null;
  history.replaceState(null, "", "/");
  showAuth("", notice);
}

$("logout-button").addEventListener("click", () => signOut());

// --- people (contacts, requests, invitations, blocks) and account settings ----------------
// Each lives in a module of its own; this is what they may use of the page.

const page = {
  sdk, state, nameOf, showAuth, signOut, report, selectTab, openConversation, startConversation,
  showConversation, presenceText,
};
const peopleTab = setupPeople(page); // its toolsFor(user) goes into each search result
setupSettings(page);

// --- start --------------------------------------------------------------------------------

if (location.pathname === "/reset-password") {
  showPasswordReset(takeLinkToken());
} else if (location.pathname === "/verify-email") {
  verifyFromLink(takeLinkToken());
} else if (sdk.session) {
  enterApp().catch((error) => showAuth(describe(error)));
} else {
  showAuth();
}

// People: contacts, contact requests, group invitations and blocking (protocol §11.7), with
// the contacts' presence (§4.1). `page` is what app.js shares with this module.
//
// The lists are read over HTTP each time the socket comes online (first connect and every
// reconnect: `contact` and `invitation` events are not replayed), and kept in step with those
// events meanwhile. Blocks are not pushed to other devices: they are read with the rest.
import { $, describe, element, readAllPages } from "/ui.js";

const REQUEST_MESSAGE_MAX = 200;

export function setupPeople(page) {
  const { sdk } = page;
  const people = {
    contacts: new Map(), // user id -> {user, since}
    incoming: new Map(), // user id -> request {user, direction, message, created_at}
    outgoing: new Map(), // user id -> request
    blocked: new Map(), // user id -> {user, created_at}
    invitations: new Map(), // conversation id -> {conversation_id, title, inviter, created_at}
  };
  let generation = 0; // a newer refresh makes an older one's answer stale
  let shownFor = null; // the user whose people are shown
  // Events that came while the lists were being read: applied again on top of what was read,
  // which may be older than they are.
  let arrived = null;

  async function refresh() {
    const mine = ++generation;
    arrived = [];
    let lists;
    try {
      lists = await Promise.all(
        ["/contacts", "/contact-requests/incoming", "/contact-requests/outgoing", "/blocks", "/invitations"].map((path) => readAllPages(sdk, path)),
      );
    } catch (error) {
      if (mine === generation) $("people-status").textContent = `People could not be loaded: ${describe(error)}`;
      return;
    }
    if (mine !== generation) return;
    const [contacts, incoming, outgoing, blocked, invitations] = lists;
    people.contacts = new Map(contacts.map((c) => [c.user.id, c]));
    people.incoming = new Map(incoming.map((r) => [r.user.id, r]));
    people.outgoing = new Map(outgoing.map((r) => [r.user.id, r]));
    people.blocked = new Map(blocked.map((b) => [b.user.id, b]));
    people.invitations = new Map(invitations.map((i) => [i.conversation_id, i]));
    for (const apply of arrived) apply();
    arrived = null;
    $("people-status").textContent = "";
    render();
  }

  function clear() {
    generation += 1;
    arrived = null;
    for (const map of Object.values(people)) map.clear();
    render();
  }

  // --- rendering ----------------------------------------------------------------------------

  function render() {
    renderList("incoming-list", people.incoming, requestItem);
    renderList("invitation-list", people.invitations, invitationItem);
    renderList("contact-list", people.contacts, contactItem);
    renderList("outgoing-list", people.outgoing, outgoingItem);
    renderList("blocked-list", people.blocked, blockedItem);
    $("requests-section").hidden = people.incoming.size === 0;
    $("invitations-section").hidden = people.invitations.size === 0;
    $("outgoing-section").hidden = people.outgoing.size === 0;
    $("blocked-section").hidden = people.blocked.size === 0;
    $("no-contacts").hidden = people.contacts.size > 0;
    $("contact-count").textContent = people.contacts.size ? `(${people.contacts.size})` : "";
    const waiting = people.incoming.size + people.invitations.size;
    $("people-badge").hidden = waiting === 0;
    $("people-badge-count").textContent = String(waiting);
    for (const tools of document.querySelectorAll("#search-results .person-tools")) fillTools(tools);
  }

  // Newest first, as the server lists them. An item already shown is kept (not rebuilt), so
  // that focus and an error shown in it survive other changes of the list; a new request from
  // the same person (a later `created_at`) is a new item.
  function renderList(id, entries, build) {
    const list = $(id);
    const focused = [...list.children].findIndex((item) => item.contains(document.activeElement));
    const shown = new Map([...list.children].map((item) => [item.dataset.key, item]));
    const wanted = [...entries.entries()]
      .sort(([, a], [, b]) => newest(b).localeCompare(newest(a)))
      .map(([entryId, entry]) => {
        const key = `${entryId} ${newest(entry)}`;
        return shown.get(key) ?? keyed(build(entry), key);
      });
    wanted.forEach((item, index) => {
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
    });
    while (list.children.length > wanted.length) list.lastElementChild.remove();
    // The focused person went (accepted, declined, removed): on to the next one, not lost.
    if (focused >= 0 && !list.contains(document.activeElement)) {
      const next = (list.children[focused] ?? list.lastElementChild)?.querySelector("button");
      (next ?? $("user-search")).focus();
    }
  }

  function newest(entry) {
    return entry.since ?? entry.created_at ?? "";
  }

  function keyed(item, key) {
    item.dataset.key = key;
    return item;
  }

  function who(user) {
    return `${user.display_name} @${user.username}`;
  }

  function personLine(user) {
    const line = element("p", "who");
    line.append(element("span", "name", user.display_name), " ", element("span", "username", `@${user.username}`));
    return line;
  }

  // A button whose failure shows as text beside it (in the item's `.error` line).
  function action(text, label, run) {
    const button = element("button", "", text);
    button.type = "button";
    button.setAttribute("aria-label", label);
    let busy = false; // not `disabled`: that would take the keyboard focus away
    button.addEventListener("click", async () => {
      if (busy) return;
      busy = true;
      const problem = button.closest(".person-card, .person-tools")?.querySelector(".error");
      if (problem) problem.textContent = "";
      try {
        await run();
      } catch (error) {
        if (problem) problem.textContent = describe(error);
      } finally {
        busy = false;
      }
    });
    return button;
  }

  // One person in a list: who, then what the caller passed (text, then its buttons in a row),
  // then the line where a failed action says why.
  function card(user, ...parts) {
    const item = element("li", "person-card");
    const buttons = element("div", "card-actions");
    item.append(personLine(user));
    for (const part of parts) (part instanceof HTMLButtonElement ? buttons : item).append(part);
    item.append(buttons, problemLine());
    return item;
  }

  function problemLine() {
    const problem = element("p", "error");
    problem.setAttribute("role", "alert");
    return problem;
  }

  function requestMessage(request) {
    return request.message ? element("p", "request-message", `“${request.message}”`) : element("p", "hint", "No message.");
  }

  function requestItem(request) {
    const { user } = request;
    return card(
      user,
      requestMessage(request),
      action("Accept", `Accept contact request from ${who(user)}`, () => accept(user)),
      action("Decline", `Decline contact request from ${who(user)}`, async () => {
        await sdk.api("POST", `/contact-requests/incoming/${user.id}/decline`);
        people.incoming.delete(user.id);
        render();
      }),
    );
  }

  function invitationItem(invitation) {
    const { inviter } = invitation;
    const title = invitation.title || "a group";
    const item = card(
      inviter,
      element("p", "", `invited you to ${invitation.title ? `“${title}”` : title}`),
      action("Accept", `Accept invitation to ${title}`, async () => {
        const conversation = await sdk.api("POST", `/invitations/${invitation.conversation_id}/accept`);
        people.invitations.delete(invitation.conversation_id);
        render();
        await page.showConversation(conversation);
      }),
      action("Decline", `Decline invitation to ${title}`, async () => {
        await sdk.api("POST", `/invitations/${invitation.conversation_id}/decline`);
        people.invitations.delete(invitation.conversation_id);
        render();
      }),
    );
    return item;
  }

  function contactItem(contact) {
    const { user } = contact;
    const item = card(
      user,
      action("Message", `Message ${who(user)}`, async () => {
        await page.showConversation(await sdk.api("POST", "/conversations", { member_ids: [user.id] }));
      }),
      action("Remove", `Remove ${who(user)} from contacts`, async () => {
        if (!confirm(`Remove ${user.display_name} from your contacts?`)) return;
        await sdk.api("DELETE", `/contacts/${user.id}`);
        people.contacts.delete(user.id);
        render();
      }),
      action("Block", `Block ${who(user)}`, () => block(user)),
    );
    item.dataset.userId = String(user.id);
    item.querySelector(".who").append(" ", element("span", "presence"));
    showPresence(item);
    return item;
  }

  // Online, or last seen; nothing when the contact hides it (or has not been heard of yet).
  function showPresence(item) {
    const span = item.querySelector(".presence");
    const text = page.presenceText(Number(item.dataset.userId));
    span.textContent = text;
    span.className = `presence${text === "online" ? " online" : ""}`;
  }

  function outgoingItem(request) {
    const { user } = request;
    return card(
      user,
      requestMessage(request),
      element("p", "hint", "Waiting for an answer."),
      action("Cancel", `Cancel contact request to ${who(user)}`, () => cancel(user)),
    );
  }

  function blockedItem(block) {
    return card(block.user, action("Unblock", `Unblock ${who(block.user)}`, () => unblock(block.user)));
  }

  // --- actions shared by the lists and the search results -----------------------------------

  async function accept(user) {
    const contact = await sdk.api("POST", `/contact-requests/incoming/${user.id}/accept`);
    people.incoming.delete(user.id);
    people.contacts.set(user.id, contact);
    render();
  }

  async function cancel(user) {
    await sdk.api("DELETE", `/contact-requests/outgoing/${user.id}`);
    people.outgoing.delete(user.id);
    render();
  }

  async function request(user, message) {
    const body = { user_id: user.id };
    if (message) body.message = message;
    const answer = await sdk.api("POST", "/contact-requests", body);
    if (answer.state === "accepted") {
      // They had asked us first: this accepted their request.
      people.incoming.delete(user.id);
      people.contacts.set(user.id, answer.contact);
    } else {
      people.outgoing.set(user.id, answer.request);
    }
    render();
  }

  async function block(user) {
    if (!confirm(`Block ${user.display_name}? They are not told; you can unblock later.`)) return;
    await sdk.api("PUT", `/blocks/${user.id}`);
    // The server also ends the contact and the requests between you (events follow).
    people.contacts.delete(user.id);
    people.incoming.delete(user.id);
    people.outgoing.delete(user.id);
    people.blocked.set(user.id, { user, created_at: new Date().toISOString() });
    render();
  }

  async function unblock(user) {
    await sdk.api("DELETE", `/blocks/${user.id}`);
    people.blocked.delete(user.id);
    render();
  }

  // --- in each search result: where we stand with that person -------------------------------

  function relation(userId) {
    if (people.blocked.has(userId)) return "blocked";
    if (people.contacts.has(userId)) return "contact";
    if (people.incoming.has(userId)) return "incoming";
    if (people.outgoing.has(userId)) return "outgoing";
    return "none";
  }

  function toolsFor(user) {
    const tools = element("div", "person-tools");
    tools.user = user;
    fillTools(tools);
    return tools;
  }

  function fillTools(tools) {
    const { user } = tools;
    const now = relation(user.id);
    if (tools.dataset.relation === now) return; // unchanged: keep focus and any open form
    tools.dataset.relation = now;
    const hadFocus = tools.contains(document.activeElement);
    tools.replaceChildren();
    const name = who(user);
    if (now === "blocked") {
      tools.append(element("span", "state", "Blocked"), action("Unblock", `Unblock ${name}`, () => unblock(user)));
    } else {
      if (now === "contact") tools.append(element("span", "state", "Contact"));
      if (now === "incoming") {
        tools.append(
          element("span", "state", "Asked to be your contact"),
          action("Accept", `Accept contact request from ${name}`, () => accept(user)),
        );
      }
      if (now === "outgoing") {
        tools.append(
          element("span", "state", "Request sent"),
          action("Cancel", `Cancel contact request to ${name}`, () => cancel(user)),
        );
      }
      if (now === "none") {
        const add = element("button", "", "Add contact");
        add.type = "button";
        add.setAttribute("aria-label", `Add contact: ${name}`);
        add.setAttribute("aria-expanded", "false");
        add.addEventListener("click", () => openRequestForm(tools, add));
        tools.append(add);
      }
      tools.append(action("Block", `Block ${name}`, () => block(user)));
    }
    tools.append(problemLine());
    if (hadFocus) tools.querySelector("button").focus();
  }

  // "Add contact" opens a small form: an optional message, then Send request.
  function openRequestForm(tools, add) {
    if (tools.querySelector("form")) return tools.querySelector("input").focus();
    const { user } = tools;
    const form = element("form", "request-form");
    const label = element("label", "", `Message to ${user.display_name} (optional)`);
    const input = document.createElement("input");
    input.name = "message";
    input.maxLength = REQUEST_MESSAGE_MAX;
    input.autocomplete = "off";
    label.append(input);
    const send = element("button", "", "Send request");
    send.type = "submit";
    const close = element("button", "", "Not now");
    close.type = "button";
    close.addEventListener("click", () => {
      form.remove();
      add.setAttribute("aria-expanded", "false");
      add.focus();
    });
    form.append(label, send, close);
    let busy = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (busy) return;
      busy = true;
      const problem = tools.querySelector(".error");
      problem.textContent = "";
      try {
        await request(user, input.value.trim()); // the tools then show "Request sent"
      } catch (error) {
        problem.textContent = describe(error);
      } finally {
        busy = false;
      }
    });
    tools.insertBefore(form, tools.querySelector(".error"));
    add.setAttribute("aria-expanded", "true");
    input.focus();
  }

  // --- live events --------------------------------------------------------------------------

  sdk.addEventListener("contact", ({ detail }) => {
    applyContact(detail);
    arrived?.push(() => applyContact(detail));
    render();
  });

  function applyContact(detail) {
    const { user } = detail;
    if (detail.change === "requested") {
      const list = detail.request.direction === "incoming" ? people.incoming : people.outgoing;
      list.set(user.id, { ...detail.request, user });
    } else if (detail.change === "accepted") {
      people.incoming.delete(user.id);
      people.outgoing.delete(user.id);
      if (!people.contacts.has(user.id)) people.contacts.set(user.id, { user, since: new Date().toISOString() });
    } else if (detail.change === "declined" || detail.change === "cancelled") {
      (detail.direction === "incoming" ? people.incoming : people.outgoing).delete(user.id);
    } else if (detail.change === "removed") {
      people.contacts.delete(user.id);
    }
  }

  sdk.addEventListener("invitation", ({ detail }) => {
    applyInvitation(detail);
    arrived?.push(() => applyInvitation(detail));
    render();
  });

  function applyInvitation(detail) {
    if (detail.change === "invited") people.invitations.set(detail.conversation_id, detail.invitation);
    else people.invitations.delete(detail.conversation_id);
  }

  // app.js stores the presence first (its listener was added before this one).
  sdk.addEventListener("presence", ({ detail }) => {
    const item = $("contact-list").querySelector(`[data-user-id="${detail.user_id}"]`);
    if (item) showPresence(item);
  });

  sdk.addEventListener("state", ({ detail }) => {
    if (detail.state !== "online") return;
    // Another account than the last one shown (a logout, then a login): show nothing of it.
    if (sdk.userId !== shownFor) clear();
    shownFor = sdk.userId;
    refresh();
  });
  sdk.addEventListener("session_ended", clear);

  return { toolsFor };
}

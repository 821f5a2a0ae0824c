// Account settings: sessions, password, email, privacy and account deletion (protocol §11).
// `page` is what app.js shares with this module. One dialog, a section per concern; each
// section shows its result or error right under its own action.
import { $, describe, element } from "/ui.js";

// Why a session ended: the 4001 close reasons of protocol §1.4 and §7 (the SDK passes them on
// as `session_ended`'s reason), and the refused refresh's error code when there was no socket.
const ENDED = {
  "logged out": "You logged out in another tab or window.",
  "session ended": "This session was ended from another of your devices: log in again.",
  "signed out everywhere": "You signed out on every device: log in again.",
  "password changed": "Your password was changed on another device: log in with the new one.",
  "password reset": "Your password was reset with a mailed link: log in with the new one.",
  "account disabled": "An administrator has disabled this account.",
  account_disabled: "An administrator has disabled this account.",
  "account deleted": "This account has been deleted.",
  "refresh token reused":
    "This session was ended for your safety: its sign-in token was used twice, as if someone had copied it. " +
    "Log in again, and change your password if that was not you.",
};

/** The login screen's words for a `session_ended` reason. */
export function sessionEndedMessage(reason) {
  return ENDED[reason] ?? "Your session has ended: log in again.";
}

const DELETED_NOTICE = "Your account is deleted. Thank you for having used TrustMess.";
// The privacy form's fields, named as GET/PATCH /users/me name them (§4.1, §11.7).
const PRIVACY = ["presence_visibility", "direct_policy", "group_policy"];

export function setupSettings(page) {
  const { sdk } = page;
  const dialog = $("settings-dialog");

  // --- opening ---------------------------------------------------------------------------

  $("settings-button").addEventListener("click", async () => {
    let me;
    try {
      me = await sdk.api("GET", "/users/me");
    } catch (error) {
      page.report(error);
      return;
    }
    for (const id of ["sessions", "password", "email", "privacy", "delete"]) clearMessages(id);
    for (const form of dialog.querySelectorAll("form")) form.reset();
    $("delete-form").hidden = true;
    $("delete-start").setAttribute("aria-expanded", "false");
    showAccount(me);
    $("session-list").replaceChildren(element("li", "hint", "Loading…"));
    dialog.showModal();
    await loadSessions();
  });

  $("settings-close").addEventListener("click", () => dialog.close());
  // The session ended (here, or by the server): the login screen must not sit under the dialog.
  sdk.addEventListener("session_ended", () => dialog.close());

  function showAccount(me) {
    showEmail(me);
    const privacy = $("privacy-form").elements;
    for (const name of PRIVACY) privacy[name].value = me[name];
  }

  // --- sessions (§11.2) ------------------------------------------------------------------

  async function loadSessions() {
    let sessions;
    try {
      sessions = (await sdk.api("GET", "/auth/sessions")).items;
    } catch (error) {
      $("session-list").replaceChildren();
      $("sessions-error").textContent = describe(error);
      return;
    }
    // This device first, then the others as the server orders them (most recently used first).
    sessions.sort((a, b) => Number(b.current) - Number(a.current));
    $("session-list").replaceChildren(...sessions.map(sessionItem));
    $("end-other-sessions").disabled = !sessions.some((session) => !session.current);
  }

  function sessionItem(session) {
    const item = element("li", `session${session.current ? " current" : ""}`);
    const device = deviceName(session.user_agent);
    const about = element("div", "about");
    const name = element("p", "device", device);
    if (session.current) name.append(" ", element("span", "tag", "This device"));
    const used = element("p", "meta", session.address ? `${session.address} · ` : "");
    used.append("last used ", timeElement(session.last_used_at), ", signed in ", timeElement(session.created_at));
    about.append(name, used);
    item.append(about);
    if (!session.current) {
      const end = element("button", "", "End");
      end.type = "button";
      end.setAttribute("aria-label", `End the session of ${device}, last used ${when(session.last_used_at)}`);
      end.addEventListener("click", async () => {
        clearMessages("sessions");
        end.disabled = true;
        try {
          await endSession(session.id);
        } catch (error) {
          end.disabled = false;
          $("sessions-error").textContent = describe(error);
          return;
        }
        $("sessions-status").textContent = `Ended the session of ${device}.`;
        await loadSessions();
        focusSessions();
      });
      item.append(end);
    }
    return item;
  }

  // Ended meanwhile (404) is what was wanted.
  function endSession(id) {
    return sdk.api("DELETE", `/auth/sessions/${encodeURIComponent(id)}`).catch((error) => {
      if (error.status !== 404) throw error;
    });
  }

  // The server has "every session" (logout-all) but not "every other one": end them one by one.
  $("end-other-sessions").addEventListener("click", async () => {
    clearMessages("sessions");
    const button = $("end-other-sessions");
    button.disabled = true;
    try {
      const { items } = await sdk.api("GET", "/auth/sessions");
      const others = items.filter((session) => !session.current);
      await Promise.all(others.map((session) => endSession(session.id)));
      $("sessions-status").textContent =
        others.length === 1 ? "Signed out 1 other session." : `Signed out ${others.length} other sessions.`;
    } catch (error) {
      $("sessions-error").textContent = describe(error);
    }
    await loadSessions();
    focusSessions();
  });

  // The button that had focus is gone or disabled: the next session's End, else the heading.
  function focusSessions() {
    const next = $("session-list").querySelector("button") ?? $("sessions-title");
    next.focus();
  }

  // --- password (§11.2) ------------------------------------------------------------------

  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const { current_password, new_password, repeat_password } = form.elements;
    if (new_password.value !== repeat_password.value) {
      clearMessages("password");
      $("password-error").textContent = "The new passwords differ: type the same one twice.";
      markInvalid(form, "repeat_password");
      return;
    }
    submit(form, "password", async () => {
      await sdk.api("POST", "/users/me/password", {
        current_password: current_password.value,
        new_password: new_password.value,
      });
      form.reset();
      await loadSessions();
      return "Password changed. Your other devices are signed out: log in there with the new password.";
    });
  });

  // --- email (§11.6) ---------------------------------------------------------------------

  function showEmail(me) {
    const state = $("email-state");
    if (!me.email) {
      state.textContent = "No address yet: without one, a forgotten password cannot be reset.";
    } else {
      state.replaceChildren(
        element("strong", "", me.email),
        " ",
        element("span", me.email_verified ? "tag verified" : "tag unverified", me.email_verified ? "verified" : "not verified"),
      );
    }
    $("resend-verification").hidden = !me.email || me.email_verified;
    $("email-form").elements.email.value = me.email ?? "";
  }

  $("email-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const email = form.elements.email.value.trim();
    submit(form, "email", async () => {
      const me = await sdk.api("PATCH", "/users/me", {
        email: email || null,
        current_password: form.elements.current_password.value,
      });
      form.elements.current_password.value = "";
      showEmail(me);
      if (!me.email) return "Address removed.";
      if (me.email_verified) return "Saved.";
      // Also when another account has verified the address: the server answers the same, so
      // that nobody can find out whose address it is (§11.6).
      return `A verification link is on its way to ${me.email}: open it to verify the address.`;
    });
  });

  $("resend-verification").addEventListener("click", async () => {
    const button = $("resend-verification");
    clearMessages("email");
    button.disabled = true;
    try {
      await sdk.api("POST", "/auth/verify-email/resend");
      // Mails to one address are capped per hour, silently (§11.6): say so rather than promise.
      $("email-status").textContent =
        "A new verification link is on its way. None after a few minutes? Look in your spam folder; " +
        "an address gets only a few mails an hour, so wait before asking again.";
    } catch (error) {
      $("email-error").textContent = describe(error);
    } finally {
      button.disabled = false;
    }
  });

  // --- privacy (§11.7, §4.1) -------------------------------------------------------------

  $("privacy-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    submit(form, "privacy", async () => {
      const body = Object.fromEntries(PRIVACY.map((name) => [name, form.elements[name].value]));
      showAccount(await sdk.api("PATCH", "/users/me", body));
      return "Privacy settings saved.";
    });
  });

  // --- deleting the account (§11.2) ------------------------------------------------------

  $("delete-start").addEventListener("click", () => {
    const form = $("delete-form");
    form.hidden = false;
    $("delete-start").setAttribute("aria-expanded", "true");
    form.elements.password.focus();
  });

  $("delete-cancel").addEventListener("click", () => {
    const form = $("delete-form");
    form.reset();
    form.hidden = true;
    clearMessages("delete");
    $("delete-start").setAttribute("aria-expanded", "false");
    $("delete-start").focus();
  });

  $("delete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    submit(form, "delete", async () => {
      await sdk.api("DELETE", "/users/me", { password: form.elements.password.value });
      dialog.close();
      await page.signOut(DELETED_NOTICE);
    });
  });

  // --- shared by the forms ---------------------------------------------------------------

  // Run a form's request with its button disabled; show the result, or the error next to it
  // with the field the server named marked and focused.
  async function submit(form, section, action) {
    clearMessages(section);
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const done = await action();
      if (done) $(`${section}-status`).textContent = done;
    } catch (error) {
      $(`${section}-error`).textContent = describe(error);
      if (error.field) markInvalid(form, error.field);
    } finally {
      button.disabled = false;
    }
  }

  function markInvalid(form, name) {
    const input = form.elements[name];
    if (!(input instanceof HTMLElement)) return;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  function clearMessages(section) {
    for (const kind of ["status", "error"]) {
      const node = $(`${section}-${kind}`);
      if (node) node.textContent = "";
    }
    const scope = section === "sessions" ? null : $(`${section}-form`);
    for (const input of scope?.querySelectorAll("[aria-invalid]") ?? []) input.removeAttribute("aria-invalid");
  }
}

function when(timestamp) {
  return new Date(timestamp).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function timeElement(timestamp) {
  const time = element("time", "", when(timestamp));
  time.dateTime = timestamp;
  return time;
}

// "Firefox on Windows" from a User-Agent; the raw string (at most 256 characters, §11.2) when
// it is no browser's (an app's own client, a script).
function deviceName(userAgent) {
  if (!userAgent) return "Unknown device";
  const browser = [
    [/Edg\//, "Edge"],
    [/OPR\//, "Opera"],
    [/Firefox\//, "Firefox"],
    [/Chrom(e|ium)\//, "Chrome"],
    [/Safari\//, "Safari"],
  ].find(([pattern]) => pattern.test(userAgent))?.[1];
  const system = [
    [/Android/, "Android"],
    [/iPhone|iPad|iPod/, "iOS"],
    [/CrOS/, "ChromeOS"],
    [/Windows/, "Windows"],
    [/Mac OS X|Macintosh/, "macOS"],
    [/Linux/, "Linux"],
  ].find(([pattern]) => pattern.test(userAgent))?.[1];
  if (!browser) return userAgent;
  return system ? `${browser} on ${system}` : browser;
}

// What every part of the web client uses: element lookup and creation, and the words for an
// error the server (or the network) gave.
import { ApiError } from "/sdk/trustmess.js";

export const $ = (id) => document.getElementById(id);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function describe(error) {
  if (!(error instanceof ApiError)) return "The server cannot be reached. Try again.";
  if (error.status === 429) return `Too many attempts: wait ${error.retryAfter ?? "a few"} s.`;
  // The server's messages start in lower case ("wrong username or password"): a sentence here.
  if (!error.field) return sentence(error.message);
  // A 422's message starts with the field's name ("current_password: is not…"): said once,
  // in words.
  const name = error.field.replaceAll("_", " ");
  const prefix = `${error.field}: `;
  const rule = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  return `${sentence(name)}: ${rule}`;
}

function sentence(text) {
  return text ? `${text[0].toUpperCase()}${text.slice(1)}` : text;
}

// Every item of a paged list (`items` and `next_cursor`, protocol §11.1), 100 a request.
export async function readAllPages(sdk, path) {
  const items = [];
  let cursor = "";
  do {
    const page = await sdk.api("GET", `${path}?limit=100&cursor=${encodeURIComponent(cursor)}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

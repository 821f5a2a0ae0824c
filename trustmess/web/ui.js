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
  const field = error.field ? ` (${error.field.replace("_", " ")})` : "";
  if (error.status === 429) return `Too many attempts: wait ${error.retryAfter ?? "a few"} s.`;
  return `${error.message}${field}`;
}

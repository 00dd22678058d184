// A room message as the page keeps it after it was shown: the fields that can change
// (text by an edit, gone by a delete, reactions) and the id of the last change applied.
// Live `edit`/`delete`/`reaction` events and history's current state both land here, so
// applying one twice, or an older state after a newer one, changes nothing.

import {key} from "./format.js";

/** The emoji offered by the react picker (single code points: no joiners or selectors). */
export const PICKER_EMOJI = ["👍", "👎", "😄", "🎉", "😕", "👀", "🚀", "🔥"];

/** A record for a `message` (live or from history) or a `private` event. */
export function makeRecord(f) {
  const rec = {
    id: typeof f.id === "number" ? f.id : null,
    type: f.type === "private" ? "private" : "message",
    room: typeof f.room === "string" ? f.room : null,
    nick: String(f.nick),
    to: f.to,
    kind: typeof f.kind === "string" ? f.kind : "say",
    ts: f.ts,
    text: String(f.text ?? ""),
    replyTo: Number.isInteger(f.reply_to) ? f.reply_to : null,
    quote: f.quote && typeof f.quote === "object"
      ? {nick: String(f.quote.nick ?? ""), text: String(f.quote.text ?? "")} : null,
    edited: null, // ts of the last edit
    deleted: false,
    reactions: new Map(), // emoji -> [nick, ...] in the order they reacted
    changed: 0, // id of the last edit, delete or reaction applied
    li: null,
  };
  applyState(rec, f);
  return rec;
}

/** True when `rec` is a room message that edits, deletes and reactions can target. */
export const changeable = (rec) => rec.type === "message" && rec.id !== null && !rec.deleted;

/** History's current state of a message (`text`, `edited`, `deleted`, `reactions`,
 * `changed`). Returns false, changing nothing, when `rec` already has a newer state. */
export function applyState(rec, m) {
  const changed = Number.isInteger(m.changed) ? m.changed : 0;
  if (changed < rec.changed) return false;
  rec.changed = Math.max(rec.changed, changed);
  rec.text = String(m.text ?? rec.text);
  rec.edited = typeof m.edited === "number" ? m.edited : null;
  rec.deleted = m.deleted === true;
  if (m.quote && typeof m.quote === "object") {
    rec.quote = {nick: String(m.quote.nick ?? ""), text: String(m.quote.text ?? "")};
  }
  rec.reactions = new Map();
  if (m.reactions && typeof m.reactions === "object" && !rec.deleted) {
    for (const [emoji, nicks] of Object.entries(m.reactions)) {
      if (Array.isArray(nicks) && nicks.length) rec.reactions.set(emoji, nicks.map(String));
    }
  }
  if (rec.deleted) {
    rec.text = "";
    rec.quote = null;
  }
  return true;
}

/** Is `event` (numbered) news for `rec`? Marks it applied when it is. */
function fresh(rec, event) {
  if (typeof event.id === "number") {
    if (event.id <= rec.changed) return false;
    rec.changed = event.id;
  }
  return true;
}

export function applyEdit(rec, f) {
  if (rec.deleted || !fresh(rec, f)) return false;
  rec.text = String(f.text ?? "");
  rec.edited = typeof f.ts === "number" ? f.ts : Date.now() / 1000;
  return true;
}

export function applyDelete(rec, f) {
  if (rec.deleted || !fresh(rec, f)) return false;
  rec.deleted = true;
  rec.text = "";
  rec.quote = null; // the text it quoted goes with it
  rec.reactions = new Map();
  return true;
}

/** `rec` replies to message `deletedId`, which was deleted: its quote keeps the nick and
 * loses the text, as the server's does. Returns whether `rec` changed. */
export function unquote(rec, deletedId) {
  if (rec.replyTo !== deletedId || !rec.quote || rec.quote.text === "") return false;
  rec.quote = {nick: rec.quote.nick, text: ""};
  return true;
}

export function applyReaction(rec, f) {
  if (rec.deleted || typeof f.emoji !== "string" || !fresh(rec, f)) return false;
  const nick = String(f.nick);
  const nicks = (rec.reactions.get(f.emoji) || []).filter((n) => key(n) !== key(nick));
  if (f.on !== false) nicks.push(nick);
  if (nicks.length) rec.reactions.set(f.emoji, nicks);
  else rec.reactions.delete(f.emoji);
  return true;
}

/** Did `nick` react to `rec` with `emoji`? */
export const reacted = (rec, emoji, nick) =>
  (rec.reactions.get(emoji) || []).some((n) => key(n) === key(nick));

/** `text` cut to `max` characters with "…", as the server cuts a reply's quote. */
export const cut = (text, max = 100) => ([...text].length > max
  ? [...text].slice(0, max).join("") + "…" : text);

/** The quote line of a reply: "nick: text" ("nick: message deleted" when its text went). */
export const quoteText = (quote) => `${quote.nick}: ${quote.text ? cut(quote.text) : "message deleted"}`;

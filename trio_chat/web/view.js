// Building the page's pieces from data: log lines, the conversation list, the members,
// the title. Every piece of user text goes in as a text node or a checked link.

import {clock, dateOf, el, hue, key, linkified, text} from "./format.js";
import {quoteText, reacted} from "./messages.js";
import {typingText} from "./typing.js";

export const $ = (id) => document.getElementById(id);

/** The page's fixed elements, by id. */
export function findElements() {
  const ids = [
    "login-view", "login", "nick", "password-row", "password", "login-button", "login-error",
    "chat-view", "me-line", "me-nick", "room-name", "topic", "status", "menu", "sidebar",
    "rooms", "privates", "privates-section", "members", "members-count", "members-section",
    "notify", "banner", "banner-text", "retry-text", "reconnect", "log", "send", "line",
    "send-button", "main", "typing", "compose", "compose-text", "compose-ok",
    "compose-cancel", "search", "search-query", "results", "results-title", "results-list",
    "results-more", "results-close", "msg-actions", "picker",
  ];
  const ui = {};
  for (const id of ids) ui[id.replace(/-(.)/g, (_, c) => c.toUpperCase())] = $(id);
  return ui;
}

function line(cls, ts) {
  const when = dateOf(ts);
  const time = el("time", "", clock(when));
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  return el("li", cls, time, el("span", "body"));
}

/** Scroll to a line and flash it (restarting the animation if it is running). */
export function flashLine(li) {
  li.scrollIntoView({block: "center"});
  li.classList.remove("flash");
  void li.offsetWidth; // restart the animation
  li.classList.add("flash");
}

export function nickButton(nick, label = nick) {
  const button = el("button", "nick", label);
  button.type = "button";
  button.dataset.nick = nick;
  button.title = `Talk privately with ${nick}`;
  button.style.setProperty("--hue", String(hue(nick)));
  return button;
}

/** The line of a message record (messages.js): a `message` (say, action or notice) or a
 * `private` event. Its body is drawn by drawMessage, again after every change. */
export function messageLine(rec, me) {
  const action = rec.kind === "action";
  const notice = rec.kind === "notice" && rec.type !== "private";
  const cls = rec.type === "private" ? "say private" : action ? "action" : notice ? "say chat-notice" : "say";
  const li = line(cls, rec.ts);
  if (key(rec.nick) === key(me)) li.classList.add("mine");
  rec.li = li;
  drawMessage(rec, me);
  return li;
}

/** (Re)draw a message's body from its record: the quote of a reply, the text (or "message
 * deleted"), "(edited)", and the reactions row. Text only ever goes in as text nodes. */
export function drawMessage(rec, me) {
  const body = rec.li.querySelector(".body");
  const nick = rec.nick;
  const parts = [];
  if (rec.replyTo !== null && !rec.deleted) {
    const quote = el("button", "quote",
      rec.quote ? quoteText(rec.quote) : "a message that is not here any more");
    quote.type = "button";
    quote.dataset.target = String(rec.replyTo);
    if (rec.quote && !rec.quote.text) quote.classList.add("gone");
    quote.title = "Show the message this replies to";
    parts.push(quote);
  }
  const words = rec.deleted ? [el("span", "deleted", "message deleted")] : linkified(rec.text);
  if (rec.kind === "action" && rec.type !== "private") {
    parts.push(text("* "), nickButton(nick), text(" "), ...words);
  } else if (rec.kind === "notice" && rec.type !== "private") {
    parts.push(text("-"), nickButton(nick), text("- "), ...words);
  } else {
    const outgoing = rec.type === "private" && key(nick) === key(me) && key(rec.to) !== key(me);
    parts.push(nickButton(nick, outgoing ? `${nick} → ${rec.to}` : nick), text(" "), ...words);
  }
  if (rec.edited !== null && !rec.deleted) {
    const mark = el("span", "edited", " (edited)");
    mark.title = "edited " + dateOf(rec.edited).toLocaleString();
    parts.push(mark);
  }
  if (rec.reactions.size) parts.push(reactionsRow(rec, me));
  body.replaceChildren(...parts);
  rec.li.classList.toggle("was-deleted", rec.deleted);
}

/** One button per emoji with its count; the user's own reactions are pressed. */
function reactionsRow(rec, me) {
  const row = el("span", "reactions");
  for (const [emoji, nicks] of rec.reactions) {
    const mine = reacted(rec, emoji, me);
    const chip = el("button", "reaction", emoji, el("span", "count", String(nicks.length)));
    chip.type = "button";
    chip.dataset.emoji = emoji;
    chip.setAttribute("aria-pressed", String(mine));
    const who = nicks.join(", ");
    chip.title = mine ? `${who} (click to take yours back)` : `${who} (click to react too)`;
    chip.setAttribute("aria-label", `${emoji} ${nicks.length}: ${who}`);
    row.append(chip);
  }
  return row;
}

export function noticeLine(message, cls = "notice", ts) {
  const li = line(cls, ts);
  li.querySelector(".body").append(text(message));
  return li;
}

export function infoLine(message) {
  const li = line("info");
  li.querySelector(".body").append(el("pre", "", String(message ?? "")));
  return li;
}

/** The unread count, marked (and with `data-mentions`) when some are for the user. */
function unreadBadge(conv) {
  const b = el("span", "unread", String(conv.unread));
  let label = `${conv.unread} unread`;
  if (conv.mentions) {
    b.classList.add("mentioned");
    b.dataset.mentions = String(conv.mentions);
    label += `, ${conv.mentions} for you`;
  }
  b.setAttribute("aria-label", label);
  b.title = label;
  return b;
}

/** One button per conversation (rooms, then private talks), with its counts. */
export function renderConversations(ui, convs, current, actions) {
  const item = (conv) => {
    const button = el("button", conv.kind === "room" ? "room conv" : "person conv");
    button.type = "button";
    button.dataset.conv = conv.name;
    if (conv.kind === "room") button.dataset.room = conv.name;
    button.setAttribute("aria-current", conv === current ? "true" : "false");
    button.append(el("span", "name", conv.name));
    if (conv.unread) button.append(unreadBadge(conv));
    if (conv.kind === "room" && !conv.joined) button.classList.add("left");
    button.addEventListener("click", () => actions.show(conv));
    const close = el("button", "part", "×");
    close.type = "button";
    const what = conv.kind === "room" ? `Leave ${conv.name}` : `Close the talk with ${conv.name}`;
    close.title = what;
    close.setAttribute("aria-label", what);
    close.addEventListener("click", () => actions.close(conv));
    return el("li", "", button, close);
  };
  ui.rooms.replaceChildren(...convs.filter((c) => c.kind === "room").map(item));
  const privates = convs.filter((c) => c.kind === "private");
  ui.privates.replaceChildren(...privates.map(item));
  ui.privatesSection.hidden = privates.length === 0;
}

export function renderMembers(ui, users, details, me) {
  const info = new Map();
  for (const d of details || []) if (d && typeof d === "object") info.set(String(d.nick), d);
  const sorted = [...users].sort((a, b) => a.localeCompare(b, undefined, {sensitivity: "base"}));
  ui.members.replaceChildren(...sorted.map((nick) => {
    const li = el("li", "");
    li.dataset.nick = nick;
    const d = info.get(nick) || {};
    if (d.op) {
      const op = el("span", "op", "@");
      op.title = "operator";
      op.setAttribute("aria-label", "operator");
      li.append(op);
    }
    li.append(nickButton(nick));
    if (d.bot) {
      li.classList.add("bot");
      const bot = el("span", "bot", "bot");
      bot.title = "a plugin's bot, not a person";
      li.append(bot);
    }
    if (key(nick) === key(me)) li.classList.add("me");
    if (d.away) {
      li.classList.add("away");
      li.title = "away: " + d.away;
      li.append(el("span", "sr-only", ` (away: ${d.away})`));
    }
    return li;
  }));
  ui.membersCount.textContent = users.length ? `(${users.length})` : "";
}

export function pageTitle(convs) {
  let unread = 0;
  let mentions = 0;
  for (const conv of convs) {
    unread += conv.unread;
    mentions += conv.mentions;
  }
  if (!unread) return "trio-chat";
  return mentions ? `(${unread}, ${mentions} for you) trio-chat` : `(${unread}) trio-chat`;
}

/** "alice is typing…" under the log (empty when nobody is). */
export function renderTyping(ui, nicks) {
  ui.typing.textContent = typingText(nicks);
}

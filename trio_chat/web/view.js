// Building the page's pieces from data: log lines, the conversation list, the members,
// the title. Every piece of user text goes in as a text node or a checked link.

import {clock, dateOf, el, hue, key, linkified, text} from "./format.js";

export const $ = (id) => document.getElementById(id);

/** The page's fixed elements, by id. */
export function findElements() {
  const ids = [
    "login-view", "login", "nick", "password-row", "password", "login-button", "login-error",
    "chat-view", "me-line", "me-nick", "room-name", "topic", "status", "menu", "sidebar",
    "rooms", "privates", "privates-section", "members", "members-count", "members-section",
    "notify", "banner", "banner-text", "retry-text", "reconnect", "log", "send", "line",
    "send-button", "main",
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

export function nickButton(nick, label = nick) {
  const button = el("button", "nick", label);
  button.type = "button";
  button.dataset.nick = nick;
  button.title = `Talk privately with ${nick}`;
  button.style.setProperty("--hue", String(hue(nick)));
  return button;
}

/** A `message` (say, action or notice) or `private` event. */
export function messageLine(f, me) {
  const nick = String(f.nick);
  const action = f.kind === "action";
  const notice = f.kind === "notice" && f.type !== "private";
  const cls = f.type === "private" ? "say private" : action ? "action" : notice ? "say chat-notice" : "say";
  const li = line(cls, f.ts);
  const body = li.querySelector(".body");
  if (action) {
    body.append(text("* "), nickButton(nick), text(" "), ...linkified(String(f.text)));
  } else if (notice) {
    body.append(text("-"), nickButton(nick), text("- "), ...linkified(String(f.text)));
  } else {
    const outgoing = f.type === "private" && key(nick) === key(me) && key(f.to) !== key(me);
    body.append(nickButton(nick, outgoing ? `${nick} → ${f.to}` : nick), text(" "),
      ...linkified(String(f.text)));
  }
  if (key(nick) === key(me)) li.classList.add("mine");
  return li;
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

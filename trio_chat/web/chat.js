// The page's state and its conversations: which exist, which is shown, adding lines,
// history pages (older ones, and a reconnection's gap), commands and notifications.
// frames.js changes this state from what the server sends; app.js from what the user does.

import {Connection, serverUrl} from "./connection.js";
import {Conversation, MAX_ENTRIES, privateId, roomId} from "./conversations.js";
import {key, mentions} from "./format.js";
import {applyState, makeRecord} from "./messages.js";
import * as saved from "./storage.js";
import {TypingBoard, TypingSender} from "./typing.js";
import {
  drawMessage, findElements, messageLine, noticeLine, pageTitle, renderConversations,
  renderMembers, renderTyping,
} from "./view.js";

const PAGE = 50; // messages per history request
/** Commands Tab completes until /help has told the server's own. */
const COMMANDS = ["help", "join", "part", "msg", "query", "me", "nick", "who", "topic",
  "away", "rooms", "history", "register", "login", "password", "quit"];

export const ui = findElements();
export const state = {
  me: null,
  wantedNick: saved.loadNick(),
  password: null, // this tab's memory only, for logging in again after a reconnect
  account: false,
  loggedIn: false,
  everLoggedIn: false,
  convs: new Map(), // conversation id -> Conversation, in the order they were opened
  current: null,
  lastRoom: null, // the room commands go to while a private talk is shown
  rooms: saved.loadRooms(), // the rooms to be in, across reconnects and reloads
  commands: [...COMMANDS],
  attempt: 0,
  retryTimer: null,
  retryAt: 0,
  closeNote: null,
  stick: true, // the log follows new lines (it is scrolled to the bottom)
  renderQueued: false,
  noTyping: false, // the server knows no `typing` frame (or this user turned typing off)
  noRead: false, // the server knows no `read` frame
  readMarkers: new Map(), // room id -> the user's read marker there (accounts)
};

export const conn = new Connection(serverUrl(), null); // app.js gives it its handlers

// ------------------------------------------------------------------ typing and reading

/** Who types in which room (from `typing` events), shown under the log. */
export const typingBoard = new TypingBoard(() => {
  renderTyping(ui, state.current && state.current.kind === "room"
    ? typingBoard.typing(state.current.id) : []);
});

/** What this page tells the others while its user types. */
export const typingSender = new TypingSender((room, active) => {
  if (state.loggedIn && !state.noTyping) conn.post({type: "typing", room, active}, {typing: true});
});

/** A `read` frame waits this long after a line came in the room shown, taking along the
 * lines that come meanwhile: in a busy room the markers cost little of the flood budget. */
const READ_LIVE_MS = 2000;
/** ... and this long after the user turned to the room (shown, or the page visible). */
const READ_SHOWN_MS = 300;

/** Tell the server (so the user's other devices) that the newest message of `conv` was
 * read: only for an account, a room, shown on a visible page, and when it is news. */
export function scheduleRead(conv, shown = false) {
  if (conv.readTimer && !shown) return;
  clearTimeout(conv.readTimer);
  conv.readTimer = setTimeout(() => {
    conv.readTimer = null;
    if (!state.account || state.noRead || !state.loggedIn || conv.kind !== "room") return;
    if (!conv.joined || !isViewing(conv)) return;
    const newest = conv.newestMessageId();
    if (!newest || newest <= Math.max(conv.readSent, conv.readId)) return;
    conv.readSent = newest;
    conn.post({type: "read", room: conv.name, id: newest}, {read: true, conv});
  }, shown ? READ_SHOWN_MS : READ_LIVE_MS);
}

/** The user read `conv` up to `id` somewhere (`read` event, or the welcome's `read`). */
export function readElsewhere(room, id) {
  if (typeof room !== "string" || !Number.isInteger(id)) return;
  const known = state.readMarkers.get(roomId(room)) || 0;
  state.readMarkers.set(roomId(room), Math.max(known, id)); // for a room joined later
  const conv = state.convs.get(roomId(room));
  if (conv && conv.readUpTo(id, state.me)) render();
}

// ------------------------------------------------------------------ conversations

export const conversations = () => [...state.convs.values()];

export function ensureRoom(name) {
  const id = roomId(name);
  let conv = state.convs.get(id);
  if (!conv) {
    conv = new Conversation("room", String(name));
    conv.readId = state.readMarkers.get(id) || 0;
    state.convs.set(id, conv);
  }
  return conv;
}

export function ensurePrivate(nick) {
  const id = privateId(nick);
  let conv = state.convs.get(id);
  if (!conv) {
    conv = new Conversation("private", String(nick));
    state.convs.set(id, conv);
    if (state.account) loadOlder(conv);
  }
  return conv;
}

export const isViewing = (conv) => conv === state.current && !document.hidden;

/** Called with (old, new) when another conversation is shown (composer.js drops its
 * reply or edit there: this module cannot import it, it imports this one). */
export const onSwitch = [];

export function show(conv) {
  const old = state.current;
  if (old && old !== conv) old.scrollTop = state.stick ? null : ui.log.scrollTop;
  state.current = conv;
  if (!conv) {
    ui.log.replaceChildren();
    ui.roomName.textContent = "no room";
    render();
    return;
  }
  if (conv.kind === "room") state.lastRoom = conv;
  ui.log.replaceChildren(conv.list);
  conv.markRead();
  if (old !== conv) {
    typingSender.stop();
    for (const listener of onSwitch) listener(old, conv);
  }
  typingBoard.changed();
  scheduleRead(conv, true);
  ui.roomName.textContent = conv.name;
  ui.log.setAttribute("aria-label", `Messages in ${conv.name}`);
  ui.line.placeholder = conv.kind === "room"
    ? `Message ${conv.name} (/help for commands)` : `Private message to ${conv.name}`;
  ui.membersSection.hidden = conv.kind !== "room";
  showTopic();
  renderMembers(ui, conv.members, conv.memberDetails, state.me);
  if (conv.kind === "room" && conv.joined) command("who", conv.name, {silent: true});
  if (conv.scrollTop === null) {
    ui.log.scrollTop = ui.log.scrollHeight;
    state.stick = true;
  } else {
    ui.log.scrollTop = conv.scrollTop;
    state.stick = false;
  }
  document.body.classList.remove("sidebar-open");
  render();
}

export function closeConversation(conv) {
  if (conv.kind === "room" && conv.joined && state.loggedIn) {
    command("part", conv.name, {silent: true}); // our leave then drops it
    return;
  }
  dropConversation(conv);
}

export function dropConversation(conv) {
  state.convs.delete(conv.id);
  if (state.current === conv) {
    const next = conversations().find((c) => c.kind === "room") || conversations()[0] || null;
    show(next);
  }
  render();
}

export function showTopic() {
  const topic = state.current ? state.current.topic : "";
  ui.topic.textContent = topic ? "— " + topic : "";
  ui.topic.title = topic;
}

export function wantRoom(name, wanted) {
  const rest = state.rooms.filter((r) => roomId(r) !== roomId(name));
  state.rooms = wanted ? [...rest, name] : rest;
  saved.saveRooms(state.rooms);
}

/** Add a line to `conv` (a local one unless `id`); keep the log at the bottom if it was. */
export function put(conv, li, id, ts) {
  const added = conv.insert(li, id, ts);
  if (added) render();
  return added;
}

export function note(message, cls = "notice", conv = state.current) {
  if (conv) put(conv, noticeLine(message, cls));
}

/** Redraw the lists and the title once, after the frames that came together. */
export function render() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  queueMicrotask(() => {
    state.renderQueued = false;
    renderConversations(ui, conversations(), state.current,
      {show: (conv) => { show(conv); ui.line.focus(); }, close: closeConversation});
    document.title = pageTitle(conversations());
    // On a phone the list is folded away: the menu button shows what waits elsewhere.
    const elsewhere = conversations().filter((c) => c !== state.current);
    const waiting = elsewhere.reduce((n, c) => n + c.unread, 0);
    ui.menu.dataset.unread = waiting ? String(waiting) : "";
    ui.menu.classList.toggle("mentioned", elsewhere.some((c) => c.mentions));
    if (state.stick) ui.log.scrollTop = ui.log.scrollHeight;
    const conv = state.current;
    if (conv && ui.log.scrollHeight <= ui.log.clientHeight) loadOlder(conv);
  });
}

export function setStatus(name, message) {
  ui.status.dataset.state = name;
  ui.status.textContent = message;
}

export function hello() {
  const frame = {type: "hello", nick: state.wantedNick, client: "trio-chat-web", batch: true,
    typing: true};
  if (state.password) frame.password = state.password;
  conn.send(frame, {name: "hello"});
}

export async function fillGap(conv, after) {
  let from = after;
  for (;;) {
    const where = conv.kind === "room" ? {room: conv.name} : {with: conv.name};
    const reply = await conn.request({type: "history", ...where, after: from, limit: PAGE});
    if (!reply || reply.type !== "history") return;
    const messages = Array.isArray(reply.messages) ? reply.messages : [];
    for (const m of messages) showMessage(m, "fresh");
    if (!reply.more || !messages.length) return;
    from = messages[messages.length - 1].id;
  }
}

export async function loadOlder(conv) {
  if (conv.olderDone || conv.loadingOlder || !state.loggedIn) return;
  if (conv.entries.length >= MAX_ENTRIES) return; // a full scrollback keeps its newest lines
  if (conv.kind === "room" ? !conv.joined : !state.account) return;
  conv.loadingOlder = true;
  const where = conv.kind === "room" ? {room: conv.name} : {with: conv.name};
  const frame = {type: "history", ...where, limit: PAGE};
  if (conv.firstId) frame.before = conv.firstId;
  const reply = await conn.request(frame);
  conv.loadingOlder = false;
  if (!reply) return;
  const messages = reply.type === "history" && Array.isArray(reply.messages) ? reply.messages : [];
  const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
  const stick = state.stick;
  for (const m of messages) showMessage(m, historyKind(conv, m.id));
  if (reply.type !== "history" || !reply.more || !messages.length) conv.olderDone = true;
  if (conv === state.current && !stick) ui.log.scrollTop = ui.log.scrollHeight - fromBottom;
}

/** A message or private event: live, from a history page of older lines ("past"), or
 * from history but never seen ("fresh": said while the page was away). */
export function showMessage(f, how) {
  if (typeof f.nick !== "string") return false;
  const mine = key(f.nick) === key(state.me);
  let conv;
  if (f.type === "private") conv = ensurePrivate(mine ? String(f.to) : f.nick);
  else if (typeof f.room === "string") conv = ensureRoom(f.room);
  else return false;
  const rec = makeRecord(f);
  const li = messageLine(rec, state.me || "");
  if (!conv.insert(li, f.id, f.ts)) {
    // Shown already (a history page overlapping what came live): its current state counts.
    const known = conv.records.get(f.id);
    if (known && how !== "live" && applyState(known, f)) drawMessage(known, state.me || "");
    return false;
  }
  if (rec.type === "message" && rec.id !== null) conv.records.set(rec.id, rec);
  conv.spoke(f.nick);
  if (how === "live" && conv.kind === "room") typingBoard.stopped(conv.id, f.nick);
  const mention = !mine && !rec.deleted && (f.type === "private" || mentions(rec.text, state.me));
  if (mention) li.classList.add("mention");
  if (how === "past") {
    li.classList.add("past");
    // A line from before this page came, but after the user's read marker (set on another
    // device): not read yet.
    if (!mine && conv.readId && f.id > conv.readId && !isViewing(conv)) {
      conv.countUnread(li, mention);
    }
  } else if (!mine && !isViewing(conv)) conv.countUnread(li, mention);
  if (how === "live" && mention) notify(conv, f);
  if (isViewing(conv)) scheduleRead(conv);
  render();
  return true;
}

export function historyKind(conv, id) {
  return conv.resumeAfter && id > conv.resumeAfter ? "fresh" : "past";
}

// ------------------------------------------------------------------ notifications

export function notify(conv, f) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (isViewing(conv)) return;
  const title = conv.kind === "room" ? `${f.nick} in ${conv.name}` : `${f.nick} (private)`;
  try {
    const n = new Notification(title, {body: String(f.text), tag: conv.id});
    n.onclick = () => {
      window.focus();
      show(conv);
      n.close();
    };
  } catch {
    // Some browsers allow notifications only from a service worker: skip them.
  }
}

export function updateNotifyButton() {
  ui.notify.hidden = !("Notification" in window) || Notification.permission !== "default";
}

export function command(name, args, meta = {}) {
  const frame = {type: "command", name, args: args || ""};
  const room = state.current && state.current.kind === "room" ? state.current : state.lastRoom;
  if (room && room.joined) frame.room = room.name;
  return conn.send(frame, {name, args: args || "", conv: state.current, ...meta});
}

export function showLoginError(message) {
  ui.loginError.textContent = message;
  ui.loginError.hidden = false;
  ui.loginButton.disabled = false;
  ui.nick.setAttribute("aria-invalid", "true");
  if (!ui.loginView.hidden && ui.passwordRow.hidden) {
    ui.nick.focus();
    ui.nick.select();
  }
}

export function showLoginView() {
  ui.chatView.hidden = true;
  ui.menu.hidden = true;
  ui.loginView.hidden = false;
  ui.banner.hidden = true;
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  ui.nick.value = state.wantedNick || "";
}

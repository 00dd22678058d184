// The chat page: logging in, conversations, reconnecting, and what the user types.
// docs/protocol.md is the contract; this file is the only one that knows the page's state.

import {Connection, backoff, serverUrl} from "./connection.js";
import {Conversation, MAX_ENTRIES, privateId, roomId} from "./conversations.js";
import {key, mentions, roomName} from "./format.js";
import {Completer, InputHistory} from "./input.js";
import * as saved from "./storage.js";
import {
  findElements, infoLine, messageLine, noticeLine, pageTitle, renderConversations,
  renderMembers,
} from "./view.js";

const PAGE = 50; // messages per history request
const COMMANDS = ["help", "join", "part", "msg", "query", "me", "nick", "who", "topic", "away",
  "rooms", "history", "register", "login", "password", "quit"];
/** Bye codes after which the page waits for the user instead of reconnecting. */
const NO_RECONNECT = new Set(["quit"]);

const ui = findElements();
const state = {
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
};
const inputHistory = new InputHistory();
const completer = new Completer();
const conn = new Connection(serverUrl(), {onOpen, onFrame, onClose});

// ------------------------------------------------------------------ conversations

const conversations = () => [...state.convs.values()];

function ensureRoom(name) {
  const id = roomId(name);
  let conv = state.convs.get(id);
  if (!conv) {
    conv = new Conversation("room", String(name));
    state.convs.set(id, conv);
  }
  return conv;
}

function ensurePrivate(nick) {
  const id = privateId(nick);
  let conv = state.convs.get(id);
  if (!conv) {
    conv = new Conversation("private", String(nick));
    state.convs.set(id, conv);
    if (state.account) loadOlder(conv);
  }
  return conv;
}

const isViewing = (conv) => conv === state.current && !document.hidden;

function show(conv) {
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

function closeConversation(conv) {
  if (conv.kind === "room" && conv.joined && state.loggedIn) {
    command("part", conv.name, {silent: true}); // our leave then drops it
    return;
  }
  dropConversation(conv);
}

function dropConversation(conv) {
  state.convs.delete(conv.id);
  if (state.current === conv) {
    const next = conversations().find((c) => c.kind === "room") || conversations()[0] || null;
    show(next);
  }
  render();
}

function showTopic() {
  const topic = state.current ? state.current.topic : "";
  ui.topic.textContent = topic ? "— " + topic : "";
  ui.topic.title = topic;
}

function wantRoom(name, wanted) {
  const rest = state.rooms.filter((r) => roomId(r) !== roomId(name));
  state.rooms = wanted ? [...rest, name] : rest;
  saved.saveRooms(state.rooms);
}

/** Add a line to `conv` (a local one unless `id`); keep the log at the bottom if it was. */
function put(conv, li, id, ts) {
  const added = conv.insert(li, id, ts);
  if (added) render();
  return added;
}

function note(message, cls = "notice", conv = state.current) {
  if (conv) put(conv, noticeLine(message, cls));
}

/** Redraw the lists and the title once, after the frames that came together. */
function render() {
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

// ------------------------------------------------------------------ connection

function setStatus(name, message) {
  ui.status.dataset.state = name;
  ui.status.textContent = message;
}

function hello() {
  const frame = {type: "hello", nick: state.wantedNick, client: "trio-chat-web", batch: true};
  if (state.password) frame.password = state.password;
  conn.send(frame, {name: "hello"});
}

function onOpen() {
  setStatus("connecting", "connected, logging in…");
  if (state.wantedNick) hello();
}

function onClose(reason, code) {
  const was = state.loggedIn;
  state.loggedIn = false;
  if (state.closeNote) {
    reason = state.closeNote;
    state.closeNote = null;
  }
  setStatus("disconnected", "disconnected: " + reason);
  ui.sendButton.disabled = true;
  if (!state.everLoggedIn || !ui.loginView.hidden) {
    showLoginError("disconnected: " + reason);
    return;
  }
  if (was) {
    for (const conv of conversations()) {
      conv.resumeAfter = conv.lastId; // the gap to fill starts here
      if (conv.kind === "room" && conv.joined) note("disconnected: " + reason, "error", conv);
    }
  }
  ui.banner.hidden = false;
  ui.bannerText.textContent = "disconnected: " + reason;
  if (NO_RECONNECT.has(code)) {
    ui.retryText.textContent = "";
    ui.reconnect.textContent = "Reconnect";
    ui.reconnect.disabled = false;
    ui.reconnect.focus();
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  const delay = backoff(state.attempt++);
  state.retryAt = Date.now() + delay * 1000;
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(reconnectNow, delay * 1000);
  ui.reconnect.textContent = "Now";
  ui.reconnect.disabled = false;
  const tick = () => {
    if (!state.retryTimer) return;
    const left = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
    ui.retryText.textContent = `reconnecting in ${left} s…`;
    setTimeout(tick, 250);
  };
  tick();
}

function reconnectNow() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  ui.retryText.textContent = "reconnecting…";
  ui.reconnect.disabled = true;
  setStatus("connecting", "connecting…");
  conn.connect();
}

// ------------------------------------------------------------------ server frames

function onFrame(f, meta) {
  switch (f.type) {
    case "welcome": return onWelcome(f);
    case "message":
    case "private": return showMessage(f, "live");
    case "join": return onJoin(f);
    case "leave": return onLeave(f);
    case "nick": return onNick(f);
    case "topic": return onTopic(f);
    case "history": return onHistory(f, meta);
    case "info": return onInfo(f, meta);
    case "error": return onError(f, meta);
    case "bye":
    case "pong":
      return undefined;
    case "ping":
      conn.send({type: "pong", token: f.token});
      return undefined;
    default:
      // A newer server's event: show its text if it has one.
      if (typeof f.text === "string") note(f.text);
      return undefined;
  }
}

function onWelcome(f) {
  const resuming = state.everLoggedIn;
  state.loggedIn = true;
  state.everLoggedIn = true;
  state.attempt = 0;
  state.me = String(f.nick);
  state.wantedNick = state.me;
  state.account = Boolean(f.account);
  saved.saveNick(state.me);
  ui.loginError.hidden = true;
  ui.loginButton.disabled = false;
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.menu.hidden = false;
  ui.banner.hidden = true;
  ui.sendButton.disabled = false;
  ui.meLine.hidden = false;
  ui.meNick.textContent = state.me;
  setStatus("connected", "connected");
  for (const conv of conversations()) conv.joined = false;

  const lobby = ensureRoom(String(f.room));
  const wanted = state.rooms.length ? [...state.rooms] : [lobby.name];
  for (const room of wanted) {
    if (roomId(room) !== lobby.id) command("join", room, {silent: true, rejoin: true});
  }
  if (!wanted.some((room) => roomId(room) === lobby.id)) {
    command("part", lobby.name, {silent: true});
  }
  // Fill each conversation's gap: everything after the last id it showed.
  for (const conv of conversations()) {
    if (conv.resumeAfter == null || !conv.resumeAfter) continue;
    if (conv.kind === "room" && !wanted.some((room) => roomId(room) === conv.id)) continue;
    if (conv.kind === "private" && !state.account) continue;
    fillGap(conv, conv.resumeAfter);
  }
  command("help", "", {silent: true});
  if (resuming) {
    note(`reconnected as ${state.me}`);
  } else {
    show(lobby);
    note(`Hello ${state.me}, you are in ${f.room} on ${f.server || "trio-chat"}. ` +
         "Type /help for commands.");
  }
  ui.line.focus();
}

async function fillGap(conv, after) {
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

async function loadOlder(conv) {
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
function showMessage(f, how) {
  if (typeof f.nick !== "string") return false;
  const mine = key(f.nick) === key(state.me);
  let conv;
  if (f.type === "private") conv = ensurePrivate(mine ? String(f.to) : f.nick);
  else if (typeof f.room === "string") conv = ensureRoom(f.room);
  else return false;
  const li = messageLine(f, state.me || "");
  if (!conv.insert(li, f.id, f.ts)) return false;
  conv.spoke(f.nick);
  const mention = !mine && (f.type === "private" || mentions(String(f.text), state.me));
  if (mention) li.classList.add("mention");
  if (how === "past") li.classList.add("past");
  else if (!mine && !isViewing(conv)) conv.countUnread(li, mention);
  if (how === "live" && mention) notify(conv, f);
  render();
  return true;
}

function historyKind(conv, id) {
  return conv.resumeAfter && id > conv.resumeAfter ? "fresh" : "past";
}

function onHistory(f, meta) {
  const messages = Array.isArray(f.messages) ? f.messages : [];
  const conv = typeof f.room === "string" ? ensureRoom(f.room)
    : typeof f.with === "string" ? ensurePrivate(f.with) : null;
  if (!conv) return;
  let added = 0;
  for (const m of messages) if (showMessage(m, historyKind(conv, m.id))) added += 1;
  if (meta && !added) note(`no earlier messages in ${conv.name} than those shown`, "notice", conv);
  if (!f.more && (!conv.firstId || messages.some((m) => m.id === conv.firstId))) {
    conv.olderDone = true;
  }
}

function onJoin(f) {
  const conv = ensureRoom(f.room);
  const me = key(f.nick) === key(state.me);
  if (me) {
    conv.joined = true;
    wantRoom(conv.name, true);
    if (conv === state.current) command("who", conv.name, {silent: true});
  } else if (!conv.members.some((n) => key(n) === key(f.nick))) {
    conv.members = [...conv.members, f.nick];
  }
  put(conv, noticeLine(`→ ${f.nick} joined ${f.room}`, "notice", f.ts), f.id, f.ts);
  membersChanged(conv);
}

function onLeave(f) {
  const conv = ensureRoom(f.room);
  const why = f.reason ? ` (${f.reason})` : "";
  put(conv, noticeLine(`← ${f.nick} left ${f.room}${why}`, "notice", f.ts), f.id, f.ts);
  if (key(f.nick) === key(state.me)) {
    conv.joined = false;
    wantRoom(conv.name, false);
    if (f.reason === "parted") dropConversation(conv);
    else render();
    return;
  }
  conv.members = conv.members.filter((n) => key(n) !== key(f.nick));
  membersChanged(conv);
}

function membersChanged(conv) {
  if (conv === state.current) renderMembers(ui, conv.members, conv.memberDetails, state.me);
}

function onNick(f) {
  const me = key(f.old) === key(state.me);
  for (const conv of conversations()) {
    const member = conv.members.some((n) => key(n) === key(f.old));
    const talk = conv.kind === "private" && key(conv.name) === key(f.old);
    if (!(me && conv.kind === "room" && conv.joined) && !member && !talk) continue;
    conv.members = conv.members.map((n) => (key(n) === key(f.old) ? f.new : n));
    put(conv, noticeLine(`${f.old} is now known as ${f.new}`, "notice", f.ts), f.id, f.ts);
    membersChanged(conv);
  }
  // A private talk follows the other's new nick (unless one with that nick is open).
  const talk = state.convs.get(privateId(f.old));
  if (talk && !state.convs.has(privateId(f.new))) {
    state.convs.delete(talk.id);
    talk.name = talk.list.dataset.conv = String(f.new);
    talk.id = privateId(f.new);
    state.convs.set(talk.id, talk);
    if (talk === state.current) ui.roomName.textContent = talk.name;
    render();
  }
  if (me) {
    state.me = state.wantedNick = String(f.new);
    saved.saveNick(state.me);
    ui.meNick.textContent = state.me;
  }
}

function onTopic(f) {
  const conv = ensureRoom(f.room);
  conv.topic = String(f.topic || "");
  const message = f.topic ? `${f.nick} set the topic of ${f.room}: ${f.topic}`
    : `${f.nick} cleared the topic of ${f.room}`;
  put(conv, noticeLine(message, "notice", f.ts), f.id, f.ts);
  if (conv === state.current) showTopic();
}

function onInfo(f, meta = {}) {
  const data = f.data && typeof f.data === "object" ? f.data : {};
  if (typeof data.room === "string" && typeof data.topic === "string") {
    ensureRoom(data.room).topic = data.topic;
    showTopic();
  }
  if (Array.isArray(data.users) && typeof data.room === "string") {
    const conv = ensureRoom(data.room);
    conv.members = data.users.map(String);
    conv.memberDetails = Array.isArray(data.members) ? data.members : [];
    membersChanged(conv);
  }
  if (Array.isArray(data.commands)) {
    const names = data.commands.map((c) => c && c.name).filter((n) => typeof n === "string");
    state.commands = [...new Set([...names, "query"])].sort();
  }
  let target = meta.conv && state.convs.has(meta.conv.id) ? meta.conv : state.current;
  if (meta.name === "join" && typeof data.room === "string") {
    target = ensureRoom(data.room); // "now talking in #room" goes to that room
    if (!meta.rejoin) {
      target.joined = true;
      show(target);
    }
  }
  rememberPassword(meta);
  if (meta.silent) return;
  if (target) put(target, infoLine(f.text));
}

/** After /login, /register or /password succeeded: the password to log in again with. */
function rememberPassword(meta) {
  const words = String(meta.args || "").trim().split(/\s+/).filter(Boolean);
  if (meta.name === "login" && words.length >= 2) {
    state.wantedNick = words[0];
    state.password = words[words.length - 1];
  } else if ((meta.name === "register" || meta.name === "password") && words.length) {
    state.password = words[words.length - 1];
  }
}

function onError(f, meta = {}) {
  const message = String(f.text || f.code || "error");
  if (!state.loggedIn) return loginRefused(String(f.code || ""), message);
  const target = meta.conv && state.convs.has(meta.conv.id) ? meta.conv : state.current;
  if (target) put(target, noticeLine(message, "error"));
  return undefined;
}

function loginRefused(code, message) {
  const reconnecting = state.everLoggedIn && ui.loginView.hidden;
  if (reconnecting && code === "nick_taken") {
    // Our old connection has not been noticed gone yet: try again a little later.
    state.closeNote = `${state.wantedNick} is still in use by the old connection`;
    conn.close();
    return;
  }
  if (code === "nick_registered" || code === "login_failed" || code === "login_throttled") {
    ui.passwordRow.hidden = false;
    state.password = null;
  }
  if (reconnecting) showLoginView();
  setStatus("idle", "connected, not logged in");
  showLoginError(code === "nick_registered"
    ? `${message} (enter the password of ${state.wantedNick})` : message);
  if (!ui.passwordRow.hidden && code !== "bad_nick" && code !== "nick_taken") {
    ui.password.focus();
  }
}

// ------------------------------------------------------------------ notifications

function notify(conv, f) {
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

function updateNotifyButton() {
  ui.notify.hidden = !("Notification" in window) || Notification.permission !== "default";
}

ui.notify.addEventListener("click", async () => {
  await Notification.requestPermission();
  updateNotifyButton();
  ui.line.focus();
});

// ------------------------------------------------------------------ what the user types

function command(name, args, meta = {}) {
  const frame = {type: "command", name, args: args || ""};
  const room = state.current && state.current.kind === "room" ? state.current : state.lastRoom;
  if (room && room.joined) frame.room = room.name;
  return conn.send(frame, {name, args: args || "", conv: state.current, ...meta});
}

function submitLine(line) {
  const conv = state.current;
  if (line.startsWith("/") && !line.startsWith("//")) {
    const body = line.slice(1);
    const space = body.search(/\s/);
    const name = (space < 0 ? body : body.slice(0, space)).toLowerCase();
    const args = space < 0 ? "" : body.slice(space + 1).trim();
    if (!name) {
      note("a lone '/' is not a command; try /help", "error");
      return true;
    }
    if (name === "query") {
      const nick = args.split(/\s+/)[0];
      if (!nick) note("usage: /query NICK", "error");
      else show(ensurePrivate(nick));
      return true;
    }
    if (name === "join" && args) {
      const existing = state.convs.get(roomId(roomName(args.split(/\s+/)[0])));
      if (existing && existing.joined) {
        show(existing);
        return true;
      }
    }
    return command(name, args) !== null;
  }
  const message = line.startsWith("//") ? line.slice(1) : line;
  if (conv && conv.kind === "private") {
    return command("msg", `${conv.name} ${message}`) !== null;
  }
  const frame = {type: "say", text: message};
  if (conv) frame.room = conv.name;
  return conn.send(frame) !== null;
}

function showLoginError(message) {
  ui.loginError.textContent = message;
  ui.loginError.hidden = false;
  ui.loginButton.disabled = false;
  ui.nick.setAttribute("aria-invalid", "true");
  if (!ui.loginView.hidden && ui.passwordRow.hidden) {
    ui.nick.focus();
    ui.nick.select();
  }
}

function showLoginView() {
  ui.chatView.hidden = true;
  ui.menu.hidden = true;
  ui.loginView.hidden = false;
  ui.banner.hidden = true;
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  ui.nick.value = state.wantedNick || "";
}

ui.nick.value = state.wantedNick || "";
ui.nick.addEventListener("input", () => { ui.passwordRow.hidden = true; });

ui.login.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const nick = ui.nick.value.trim();
  if (!nick) {
    showLoginError("please enter a nickname");
    return;
  }
  ui.loginError.hidden = true;
  ui.nick.removeAttribute("aria-invalid");
  ui.loginButton.disabled = true; // until welcome, an error, or the socket closes
  state.wantedNick = nick;
  state.password = ui.passwordRow.hidden ? null : ui.password.value || null;
  ui.password.value = "";
  if (conn.open) hello();
  else {
    setStatus("connecting", "connecting…");
    conn.connect(); // says hello once open
  }
});

ui.send.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const line = ui.line.value;
  if (!line.trim()) return;
  if (!state.loggedIn) {
    ui.line.setAttribute("aria-invalid", "true"); // the line is kept for later
    return;
  }
  if (!submitLine(line)) return;
  inputHistory.push(line);
  ui.line.value = "";
  completer.reset();
  state.stick = true;
  ui.log.scrollTop = ui.log.scrollHeight;
});

function completionSources() {
  const conv = state.current;
  const nicks = conv ? [...conv.speakers, ...conv.members] : [];
  if (conv && conv.kind === "private") nicks.unshift(conv.name);
  for (const c of conversations()) if (c.kind === "private") nicks.push(c.name);
  return {
    commands: state.commands,
    nicks: nicks.filter((n) => key(n) !== key(state.me)),
    rooms: conversations().filter((c) => c.kind === "room").map((c) => c.name),
  };
}

ui.line.addEventListener("keydown", (ev) => {
  if (ev.key === "Tab" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey) {
    const caret = ui.line.selectionStart ?? ui.line.value.length;
    const done = completer.complete(ui.line.value, caret, completionSources());
    if (done) {
      ev.preventDefault();
      ui.line.value = done.value;
      ui.line.setSelectionRange(done.caret, done.caret);
    }
    return;
  }
  if (ev.key !== "Shift") completer.reset();
  if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
  if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
    const next = ev.key === "ArrowUp" ? inputHistory.up(ui.line.value) : inputHistory.down();
    if (next !== null) {
      ui.line.value = next;
      ev.preventDefault();
    }
  } else if (ev.key === "PageUp" || ev.key === "PageDown") {
    const page = ui.log.clientHeight * 0.9;
    ui.log.scrollTop += ev.key === "PageUp" ? -page : page;
    ev.preventDefault();
  }
});
ui.line.addEventListener("input", () => ui.line.removeAttribute("aria-invalid"));

// Keyboard: Alt+Up/Down and Alt+1..9 switch conversations, Escape goes back to typing.
document.addEventListener("keydown", (ev) => {
  if (ui.chatView.hidden) return;
  const all = conversations();
  if (ev.altKey && (ev.key === "ArrowUp" || ev.key === "ArrowDown") && all.length) {
    const at = all.indexOf(state.current);
    const step = ev.key === "ArrowUp" ? -1 : 1;
    show(all[(at + step + all.length) % all.length]);
    ui.line.focus();
    ev.preventDefault();
  } else if (ev.altKey && /^[1-9]$/.test(ev.key) && all[Number(ev.key) - 1]) {
    show(all[Number(ev.key) - 1]);
    ui.line.focus();
    ev.preventDefault();
  } else if (ev.key === "Escape") {
    document.body.classList.remove("sidebar-open");
    ui.menu.setAttribute("aria-expanded", "false");
    ui.line.focus();
  }
});

// Clicking a nick (in a line or the member list) opens a private talk with it.
document.addEventListener("click", (ev) => {
  const button = ev.target instanceof Element ? ev.target.closest("button.nick") : null;
  if (!button || !button.dataset.nick || key(button.dataset.nick) === key(state.me)) return;
  show(ensurePrivate(button.dataset.nick));
  ui.line.focus();
});

ui.log.addEventListener("scroll", () => {
  state.stick = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  if (ui.log.scrollTop < 80 && state.current) loadOlder(state.current);
});

ui.menu.addEventListener("click", () => {
  const open = document.body.classList.toggle("sidebar-open");
  ui.menu.setAttribute("aria-expanded", String(open));
  if (open) ui.sidebar.querySelector("button")?.focus();
});

// A tap beside the open drawer closes it.
ui.main.addEventListener("click", () => {
  if (!document.body.classList.contains("sidebar-open")) return;
  document.body.classList.remove("sidebar-open");
  ui.menu.setAttribute("aria-expanded", "false");
});

ui.reconnect.addEventListener("click", () => {
  reconnectNow();
  ui.line.focus();
});

window.addEventListener("online", () => { if (state.retryTimer) reconnectNow(); });

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.current) {
    state.current.markRead();
    render();
  }
});

window.addEventListener("pagehide", () => {
  if (conn.open) conn.send({type: "quit", reason: "closed the page"});
});

updateNotifyButton();

// For tests and curious users: a read-only look at the client's state.
window.trioChat = {
  get state() {
    return {
      loggedIn: state.loggedIn, me: state.me, account: state.account,
      attempt: state.attempt, retryIn: state.retryTimer ? (state.retryAt - Date.now()) / 1000 : null,
      current: state.current ? state.current.name : null, rooms: [...state.rooms],
      conversations: conversations().map((c) => ({
        name: c.name, kind: c.kind, joined: c.joined, unread: c.unread, mentions: c.mentions,
        lastId: c.lastId,
      })),
    };
  },
};

// What the server sends (docs/protocol.md, section 6), applied to the page's state.

import {catchUpChanges, onChange} from "./changes.js";
import {
  command, conn, conversations, dropConversation, ensurePrivate, ensureRoom, fillGap,
  historyKind, note, put, readElsewhere, render, setStatus, show, showLoginError,
  showLoginView, showMessage, showTopic, state, typingBoard, ui, wantRoom,
} from "./chat.js";
import {privateId, roomId} from "./conversations.js";
import {key} from "./format.js";
import * as saved from "./storage.js";
import {infoLine, noticeLine, renderMembers} from "./view.js";

export function onFrame(f, meta) {
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
    case "edit":
    case "delete":
    case "reaction":
      return onChange(f);
    case "typing": return onTyping(f);
    case "read": return readElsewhere(f.room, f.id);
    case "search": // the answer to a search box request: search.js has it already
      return undefined;
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
  ui.search.hidden = false;
  for (const conv of conversations()) conv.joined = false;
  typingBoard.clear(); // whoever was typing before the drop has stopped or will say again

  const lobby = ensureRoom(String(f.room));
  // A connection that joined its user, connected elsewhere too, is in the user's rooms
  // already: the welcome lists them (protocol.md §4), and no join comes for them.
  const already = Array.isArray(f.rooms) ? f.rooms.map(String) : [lobby.name];
  const inAlready = (room) => already.some((r) => roomId(r) === roomId(room));
  if (Array.isArray(f.rooms)) {
    for (const room of already) {
      ensureRoom(room).joined = true;
      wantRoom(room, true);
    }
  }
  const wanted = state.rooms.length ? [...state.rooms] : [lobby.name];
  for (const room of already) if (!wanted.some((w) => roomId(w) === roomId(room))) wanted.push(room);
  for (const room of wanted) {
    if (!inAlready(room)) command("join", room, {silent: true, rejoin: true});
  }
  if (!wanted.some((room) => roomId(room) === lobby.id)) {
    command("part", lobby.name, {silent: true});
  }
  // Fill each conversation's gap: everything after the last id it showed.
  for (const conv of conversations()) {
    if (conv.resumeAfter == null || !conv.resumeAfter) continue;
    if (conv.kind === "room" && !wanted.some((room) => roomId(room) === conv.id)) continue;
    if (conv.kind === "private" && !state.account) continue;
    const after = conv.resumeAfter;
    // Then the edits, deletes and reactions made meanwhile to the messages shown before.
    fillGap(conv, after).then(() => { if (conv.kind === "room") catchUpChanges(conv, after); });
  }
  // Where the user's other devices read up to (accounts): the unread counts follow.
  if (f.read && typeof f.read === "object") {
    for (const [room, id] of Object.entries(f.read)) readElsewhere(room, id);
  }
  command("help", "", {silent: true});
  if (resuming) {
    note(`reconnected as ${state.me}`);
  } else {
    show(lobby);
    const also = f.connections ? `, now on ${f.connections} connections` : "";
    note(`Hello ${state.me}, you are in ${already.join(", ")} on ${f.server || "trio-chat"}` +
         `${also}. Type /help for commands.`);
  }
  ui.line.focus();
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
  if (f.bot === true) {
    // A plugin's bot: marked in the list until the next /who says it all again.
    const others = (conv.memberDetails || []).filter((d) => key(String(d.nick)) !== key(f.nick));
    conv.memberDetails = [...others, {nick: f.nick, bot: true}];
  }
  const who = f.bot === true ? `${f.nick} (bot)` : f.nick;
  put(conv, noticeLine(`→ ${who} joined ${f.room}`, "notice", f.ts), f.id, f.ts);
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
  typingBoard.stopped(conv.id, f.nick);
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

function onTyping(f) {
  if (typeof f.room !== "string" || typeof f.nick !== "string") return;
  if (key(f.nick) === key(state.me)) return;
  typingBoard.event(roomId(f.room), f.nick, f.active === true);
}

/** An operator made or unmade (`mode` notice): the member list, and who may delete. */
function onMode(data) {
  if (data.rule !== "operator" || typeof data.room !== "string") return;
  const conv = state.convs.get(roomId(data.room));
  if (!conv) return;
  const nick = String(data.nick);
  const others = (conv.memberDetails || []).filter((d) => key(String(d.nick)) !== key(nick));
  const old = (conv.memberDetails || []).find((d) => key(String(d.nick)) === key(nick)) || {};
  conv.memberDetails = [...others, {...old, nick, op: data.on === true}];
  membersChanged(conv);
}

function onInfo(f, meta = {}) {
  const data = f.data && typeof f.data === "object" ? f.data : {};
  if (data.event === "mode") onMode(data);
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
  // Typing notices and read markers are the page's own doing: a refusal is not the user's
  // business. A server that knows neither (or a user who turned typing off) is left alone.
  if (meta.typing) {
    if (f.code === "unknown_type" || f.code === "not_allowed") state.noTyping = true;
    return undefined;
  }
  if (meta.read) {
    if (f.code === "unknown_type") state.noRead = true;
    return undefined;
  }
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

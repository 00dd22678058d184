// The chat page's entry point: the connection's life (reconnecting with back-off, shown),
// and everything the user does: logging in, typing, keys, clicks and scrolling.
// docs/protocol.md is the contract; chat.js holds the state and frames.js applies events.

import {backoff} from "./connection.js";
import {
  command, conn, conversations, ensurePrivate, hello, loadOlder, note, render, scheduleRead,
  setStatus, show, showLoginError, state, typingSender, ui, updateNotifyButton,
} from "./chat.js";
import {cancelCompose, editing, submitComposed} from "./composer.js";
import {roomId} from "./conversations.js";
import {key, roomName} from "./format.js";
import {onFrame} from "./frames.js";
import {Completer, InputHistory} from "./input.js";
import {closeResults} from "./search.js";

/** Bye codes after which the page waits for the user instead of reconnecting. */
const NO_RECONNECT = new Set(["quit"]);
conn.handlers = {onOpen, onFrame, onClose};

const inputHistory = new InputHistory();
const completer = new Completer();

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

ui.notify.addEventListener("click", async () => {
  await Notification.requestPermission();
  updateNotifyButton();
  ui.line.focus();
});

// ------------------------------------------------------------------ what the user types


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
  const composed = submitComposed(line);
  if (composed === false) return;
  if (composed === "edited") { // the box has the line typed before editing back
    typingSender.sent();
    return;
  }
  if (composed === null && !submitLine(line)) return;
  typingSender.sent();
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
ui.line.addEventListener("input", () => {
  ui.line.removeAttribute("aria-invalid");
  const conv = state.current;
  const room = conv && conv.kind === "room" && conv.joined && !editing() ? conv.name : null;
  typingSender.update(room, ui.line.value);
});

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
    if (document.activeElement === ui.line && cancelCompose()) return;
    if (document.activeElement === ui.line && closeResults()) return;
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
    scheduleRead(state.current, true);
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
        lastId: c.lastId, readId: c.readId, readSent: c.readSent,
      })),
    };
  },
};

// Doing things to a message: the actions toolbar (on the message under the mouse, or the
// one chosen with the keyboard in the log), the emoji picker, and the bar above the message
// box while replying to, editing or deleting a message. Frames: `say` with `reply_to`,
// `edit`, `delete`, `react` (docs/protocol.md); the changes come back as events for
// everyone (frames.js), so nothing here changes a message by itself.

import {conn, note, onSwitch, state, ui} from "./chat.js";
import {el, key} from "./format.js";
import {PICKER_EMOJI, changeable, cut, quoteText, reacted} from "./messages.js";
import {flashLine} from "./view.js";

/** What the message box does now: null (a new line), or {mode: "reply"|"edit"|"delete",
 * conv, rec, draft} (draft: the line typed before editing, given back afterwards). */
let compose = null;
let selected = null; // the li chosen with the keyboard in the log
let toolbarFor = null; // the record whose li holds the toolbar

/** The record of a log line of the current room, if it is a message actions apply to. */
function recordOf(li) {
  const conv = state.current;
  if (!li || !conv || conv.kind !== "room") return null;
  const rec = conv.records.get(Number(li.dataset.id));
  return rec && rec.li === li && changeable(rec) ? rec : null;
}

/** Operators may delete anyone's message: known from /who and `mode` notices. */
export function isOperator(conv) {
  const me = (conv.memberDetails || []).find((d) => d && key(String(d.nick)) === key(state.me));
  return Boolean(me && me.op);
}

const mine = (rec) => key(rec.nick) === key(state.me);
const canAct = () => state.loggedIn && state.current && state.current.joined;

function showToolbar(rec) {
  if (!rec || !canAct()) {
    hideToolbar();
    return;
  }
  toolbarFor = rec;
  const bar = ui.msgActions;
  bar.querySelector("[data-act=edit]").hidden = !mine(rec);
  bar.querySelector("[data-act=delete]").hidden = !(mine(rec) || isOperator(state.current));
  bar.hidden = false;
  if (bar.parentElement !== rec.li) rec.li.append(bar);
}

function hideToolbar() {
  const bar = ui.msgActions;
  if (bar.contains(document.activeElement)) return; // keyboard users keep it while in it
  bar.hidden = true;
  toolbarFor = null;
}

function act(name, rec, anchor) {
  if (!rec || !canAct()) return;
  if (name === "reply") startCompose("reply", rec);
  else if (name === "edit" && mine(rec)) startCompose("edit", rec);
  else if (name === "delete" && (mine(rec) || isOperator(state.current))) startCompose("delete", rec);
  else if (name === "react") openPicker(rec, anchor || rec.li);
}

// ------------------------------------------------------------------ the compose bar

function startCompose(mode, rec) {
  if (compose) {
    compose.rec.li.classList.remove("target");
    if (compose.mode === "edit") ui.line.value = compose.draft;
  }
  compose = {mode, conv: state.current, rec, draft: ui.line.value};
  const whose = mine(rec) ? "your message" : `${rec.nick}'s message`;
  if (mode === "reply") ui.composeText.textContent = `replying to ${quoteText(rec)}`;
  else if (mode === "edit") ui.composeText.textContent = "editing your message (Enter saves)";
  else ui.composeText.textContent = `delete ${whose} “${cut(rec.text)}”?`;
  ui.compose.dataset.mode = mode;
  ui.compose.hidden = false;
  ui.composeOk.hidden = mode !== "delete";
  rec.li.classList.add("target");
  if (mode === "edit") ui.line.value = rec.text;
  if (mode === "delete") ui.composeOk.focus();
  else {
    ui.line.focus();
    ui.line.setSelectionRange(ui.line.value.length, ui.line.value.length);
  }
}

/** Back to writing a new line; an edit gives the line typed before it back. */
export function cancelCompose() {
  if (!compose) return false;
  const was = compose;
  compose = null;
  was.rec.li.classList.remove("target");
  ui.compose.hidden = true;
  delete ui.compose.dataset.mode;
  if (was.mode === "edit") ui.line.value = was.draft;
  ui.line.focus();
  return true;
}

/** The typed line, when the bar is up: returns true when it was sent as a reply or an
 * edit, false when it was refused (the line stays), null when it is an ordinary line. */
export function submitComposed(line) {
  if (!compose || compose.mode === "delete") return null;
  if (line.startsWith("/") && !line.startsWith("//")) return null; // commands go as ever
  const {mode, conv, rec} = compose;
  if (conv !== state.current || !conv.joined) {
    cancelCompose();
    return null;
  }
  const text = line.startsWith("//") ? line.slice(1) : line;
  let ref;
  if (mode === "reply") {
    ref = conn.post({type: "say", room: conv.name, text, reply_to: rec.id}, {conv});
  } else if (text === rec.text) {
    ref = "unchanged";
  } else {
    ref = conn.post({type: "edit", room: conv.name, id: rec.id, text}, {conv});
  }
  if (ref === null) return false;
  const draft = compose.draft;
  cancelCompose();
  if (mode === "edit") {
    ui.line.value = draft; // app.js clears the box only for new lines
    return "edited";
  }
  return true;
}

/** Is the message box editing a message (no typing notices for that)? */
export const editing = () => compose !== null && compose.mode !== "reply";

function confirmDelete() {
  if (!compose || compose.mode !== "delete") return;
  const {conv, rec} = compose;
  conn.post({type: "delete", room: conv.name, id: rec.id}, {conv});
  cancelCompose();
}

/** A message that went away (deleted, trimmed) or a conversation switch: drop its bar. */
export function forget(rec) {
  if (compose && (!rec || compose.rec === rec)) cancelCompose();
  if (!rec || toolbarFor === rec) {
    ui.msgActions.hidden = true;
    toolbarFor = null;
  }
  closePicker();
}

// A reply or an edit belongs to the conversation it was started in.
onSwitch.push(() => forget(null));

// ------------------------------------------------------------------ reactions

let pickerFor = null;
let pickerReturn = null;

function openPicker(rec, anchor) {
  pickerFor = rec;
  pickerReturn = document.activeElement;
  ui.picker.replaceChildren(...PICKER_EMOJI.map((emoji) => {
    const b = el("button", "pick", emoji);
    b.type = "button";
    b.dataset.emoji = emoji;
    const on = reacted(rec, emoji, state.me);
    b.setAttribute("aria-pressed", String(on));
    b.title = on ? `take back your ${emoji}` : `react with ${emoji}`;
    return b;
  }));
  const main = ui.main.getBoundingClientRect();
  const at = anchor.getBoundingClientRect();
  ui.picker.style.top = `${Math.max(0, at.bottom - main.top)}px`;
  ui.picker.style.right = `${Math.max(0, main.right - at.right)}px`;
  ui.picker.hidden = false;
  ui.picker.querySelector("button").focus();
}

function closePicker(refocus = false) {
  if (ui.picker.hidden) return;
  ui.picker.hidden = true;
  pickerFor = null;
  if (refocus && pickerReturn && document.contains(pickerReturn)) pickerReturn.focus();
  else if (refocus) ui.line.focus();
  pickerReturn = null;
}

/** Add or take back the user's `emoji` on `rec`. */
function toggleReaction(rec, emoji) {
  if (!canAct() || !changeable(rec)) return;
  const on = !reacted(rec, emoji, state.me);
  conn.post({type: "react", room: state.current.name, id: rec.id, emoji, on},
    {conv: state.current});
}

ui.picker.addEventListener("click", (ev) => {
  const b = ev.target instanceof Element ? ev.target.closest("button.pick") : null;
  if (!b || !pickerFor) return;
  toggleReaction(pickerFor, b.dataset.emoji);
  closePicker(true);
});

ui.picker.addEventListener("keydown", (ev) => {
  const buttons = [...ui.picker.querySelectorAll("button")];
  const at = buttons.indexOf(document.activeElement);
  if (ev.key === "Escape") {
    closePicker(true);
  } else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
    const step = ev.key === "ArrowRight" ? 1 : -1;
    buttons[(at + step + buttons.length) % buttons.length].focus();
  } else if (ev.key === "Tab") {
    closePicker(true);
  } else {
    return;
  }
  ev.preventDefault();
  ev.stopPropagation();
});

document.addEventListener("mousedown", (ev) => {
  if (!ui.picker.hidden && !ui.picker.contains(ev.target)
      && !ui.msgActions.contains(ev.target)) closePicker();
});

// ------------------------------------------------------------------ the log

ui.log.addEventListener("mouseover", (ev) => {
  if (selected) return; // the keyboard's choice wins until the log loses the focus
  const li = ev.target instanceof Element ? ev.target.closest("li") : null;
  if (!li || (li === ui.msgActions.parentElement && !ui.msgActions.hidden)) return;
  const rec = recordOf(li);
  if (rec) showToolbar(rec);
  else hideToolbar();
});

ui.log.addEventListener("mouseleave", () => { if (!selected) hideToolbar(); });

ui.log.addEventListener("click", (ev) => {
  const target = ev.target instanceof Element ? ev.target : null;
  if (!target) return;
  const actButton = target.closest("#msg-actions button");
  if (actButton && toolbarFor) {
    act(actButton.dataset.act, toolbarFor, actButton);
    return;
  }
  const chip = target.closest("button.reaction");
  if (chip) {
    const rec = recordOf(chip.closest("li"));
    if (rec) toggleReaction(rec, chip.dataset.emoji);
    return;
  }
  const quote = target.closest("button.quote");
  if (quote) showOriginal(Number(quote.dataset.target));
});

/** Scroll to the message a reply quotes and flash it (if it is loaded here). */
function showOriginal(id) {
  const conv = state.current;
  const rec = conv && conv.records.get(id);
  if (!rec) {
    quoteMissing(conv);
    return;
  }
  state.stick = false;
  flashLine(rec.li);
}

function quoteMissing(conv) {
  if (conv) note("the message replied to is not loaded here (older history may have it)");
}

function select(li) {
  if (selected) selected.classList.remove("selected");
  selected = li;
  if (!li) return;
  li.classList.add("selected");
  li.scrollIntoView({block: "nearest"});
  showToolbar(recordOf(li));
}

// Keys in the message list (the list itself focused, or a button in a line, as Shift+Tab
// from the message box lands on): Up/Down choose a message, then R, E, Delete, + act.
ui.log.addEventListener("keydown", (ev) => {
  if (ev.altKey || ev.ctrlKey || ev.metaKey || !(ev.target instanceof Element)) return;
  const conv = state.current;
  if (!conv || conv.kind !== "room") return;
  const here = ev.target === ui.log ? selected : ev.target.closest("#log li");
  if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
    const lines = [...conv.list.querySelectorAll("li.say, li.action")].filter(recordOf);
    if (!lines.length) return;
    const at = lines.indexOf(here);
    let next;
    if (at < 0) next = ev.key === "ArrowUp" ? lines.length - 1 : 0;
    else next = Math.min(lines.length - 1, Math.max(0, at + (ev.key === "ArrowUp" ? -1 : 1)));
    if (ev.target !== ui.log) ui.log.focus({preventScroll: true});
    select(lines[next]);
    ev.preventDefault();
    return;
  }
  const rec = here && recordOf(here);
  if (!rec) return;
  const name = {r: "reply", e: "edit", Delete: "delete", "+": "react", "=": "react"}[ev.key];
  if (!name) return;
  ev.preventDefault();
  act(name, rec, here);
});

ui.log.addEventListener("focusout", (ev) => {
  if (ev.relatedTarget instanceof Node && ui.log.contains(ev.relatedTarget)) return;
  if (ev.relatedTarget instanceof Node && ui.picker.contains(ev.relatedTarget)) return;
  select(null);
  hideToolbar();
});

ui.composeOk.addEventListener("click", confirmDelete);
ui.composeCancel.addEventListener("click", cancelCompose);
ui.compose.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") {
    cancelCompose();
    ev.preventDefault();
    ev.stopPropagation();
  }
});

// The search box: a `search` frame over the user's rooms (or one, written first:
// "#dev deploy"), the results listed above the log with their room and time, and older
// results page by page ("before" the oldest shown).

import {conn, note, render, show, state, ui} from "./chat.js";
import {roomId} from "./conversations.js";
import {clock, dateOf, el, roomName} from "./format.js";
import {flashLine, nickButton} from "./view.js";

const PAGE = 20;
let current = null; // {query, room, oldest}: what "Older results" goes on with

/** "#dev deploy friday" -> {room: "#dev", query: "deploy friday"}. */
export function parseSearch(typed) {
  const words = typed.trim().split(/\s+/);
  if (words.length > 1 && words[0].startsWith("#")) {
    return {room: roomName(words[0]), query: words.slice(1).join(" ")};
  }
  return {room: null, query: typed.trim()};
}

async function run(more) {
  if (!current) return;
  const frame = {type: "search", query: current.query, limit: PAGE};
  if (current.room) frame.room = current.room;
  if (more && current.oldest) frame.before = current.oldest;
  ui.resultsMore.disabled = true;
  const asked = current;
  const reply = await conn.request(frame);
  if (asked !== current) return; // a newer search replaced this one
  ui.resultsMore.disabled = false;
  if (!reply) {
    showProblem("not connected: search again once the page is back");
  } else if (reply.type === "error") {
    showProblem(String(reply.text || reply.code));
  } else if (reply.type === "search") {
    const messages = Array.isArray(reply.messages) ? reply.messages : [];
    // Newest first; "Older results" goes on below.
    const sorted = [...messages].sort((a, b) => b.id - a.id);
    ui.resultsList.append(...sorted.map(resultItem));
    const ids = sorted.map((m) => m.id).filter(Number.isInteger);
    if (ids.length) current.oldest = Math.min(current.oldest || Infinity, ...ids);
    ui.resultsMore.hidden = !reply.more;
    const count = ui.resultsList.querySelectorAll("li.result").length;
    const where = current.room ? ` in ${current.room}` : "";
    ui.resultsTitle.textContent = count
      ? `${count}${reply.more ? "+" : ""} found for “${current.query}”${where}`
      : `nothing found for “${current.query}”${where}`;
  }
}

function showProblem(message) {
  ui.resultsList.append(el("li", "error", message));
  ui.resultsMore.hidden = true;
}

function resultItem(m) {
  const when = dateOf(m.ts);
  const time = el("time", "", `${when.toLocaleDateString()} ${clock(when)}`);
  time.dateTime = when.toISOString();
  const open = el("button", "open", String(m.room ?? ""));
  open.type = "button";
  open.title = "Show it in its room";
  open.addEventListener("click", () => goTo(String(m.room), m.id));
  const li = el("li", "result", open, time, el("span", "body",
    nickButton(String(m.nick)), " ", String(m.text ?? "")));
  li.dataset.id = String(m.id);
  li.dataset.room = String(m.room);
  return li;
}

/** Show the room of a result and, if that message is loaded there, scroll to it. */
function goTo(room, id) {
  const conv = state.convs.get(roomId(room));
  if (!conv) {
    note(`you are not in ${room} any more`);
    return;
  }
  show(conv);
  const rec = conv.records.get(id);
  if (!rec) {
    note("that message is older than what is loaded here: scroll up to load more", "notice", conv);
    return;
  }
  state.stick = false;
  flashLine(rec.li);
}

export function closeResults() {
  if (ui.results.hidden) return false;
  ui.results.hidden = true;
  current = null;
  render(); // the log grew back: still at its end if it was
  return true;
}

ui.search.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const parsed = parseSearch(ui.searchQuery.value);
  if (!parsed.query) return;
  current = {...parsed, oldest: 0};
  ui.resultsList.replaceChildren();
  ui.resultsTitle.textContent = `searching for “${parsed.query}”…`;
  ui.resultsMore.hidden = true;
  ui.results.hidden = false;
  render(); // the log shrank: keep it at its end if it was
  run(false);
});

ui.resultsMore.addEventListener("click", () => run(true));
ui.resultsClose.addEventListener("click", () => {
  closeResults();
  ui.line.focus();
});
ui.searchQuery.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && closeResults()) {
    ev.stopPropagation();
    ev.preventDefault();
  }
});

// Changes to messages already shown: `edit`, `delete` and `reaction` events applied to
// their records and redrawn, and, after a reconnect, the changes made while the page was
// away (`history` with `changed_after`, page after page).

import {conn, render, state} from "./chat.js";
import {forget} from "./composer.js";
import {roomId} from "./conversations.js";
import {applyDelete, applyEdit, applyReaction, applyState, unquote} from "./messages.js";
import {drawMessage} from "./view.js";

const PAGE = 100; // changed messages per request when catching up

function targetOf(f) {
  if (typeof f.room !== "string" || !Number.isInteger(f.target)) return null;
  const conv = state.convs.get(roomId(f.room));
  const rec = conv ? conv.records.get(f.target) : undefined;
  return rec ? {conv, rec} : null;
}

/** A live `edit`, `delete` or `reaction` event. A message not loaded here is skipped: its
 * current state comes with it if it is ever loaded. */
export function onChange(f) {
  const found = targetOf(f);
  if (!found) return;
  const {conv, rec} = found;
  const apply = f.type === "edit" ? applyEdit : f.type === "delete" ? applyDelete : applyReaction;
  if (!apply(rec, f)) return;
  if (rec.deleted) {
    forget(rec);
    if (rec.li.classList.contains("unseen")) {
      // A deleted line is nothing left to read.
      rec.li.classList.remove("unseen");
      conv.unread = Math.max(0, conv.unread - 1);
      if (rec.li.classList.contains("mention")) conv.mentions = Math.max(0, conv.mentions - 1);
    }
    rec.li.classList.remove("mention");
    unquoteReplies(conv, rec.id);
  }
  drawMessage(rec, state.me || "");
  render();
}

/** The replies shown of a deleted message lose the text they quoted of it. */
function unquoteReplies(conv, deletedId) {
  for (const reply of conv.records.values()) {
    if (unquote(reply, deletedId)) drawMessage(reply, state.me || "");
  }
}

/** After a reconnect: the room's messages changed by an edit, delete or reaction after
 * `after` (the last id seen before the connection dropped), in their current state. */
export async function catchUpChanges(conv, after) {
  let from = after;
  for (;;) {
    const reply = await conn.request(
      {type: "history", room: conv.name, changed_after: from, limit: PAGE});
    if (!reply || reply.type !== "history") return; // an older server: nothing to catch up
    const messages = Array.isArray(reply.messages) ? reply.messages : [];
    for (const m of messages) {
      const rec = conv.records.get(m.id);
      if (!rec || !applyState(rec, m)) continue;
      if (rec.deleted) {
        forget(rec);
        unquoteReplies(conv, rec.id);
      }
      drawMessage(rec, state.me || "");
    }
    render();
    const last = messages[messages.length - 1];
    if (!reply.more || !last || !Number.isInteger(last.changed) || last.changed <= from) return;
    from = last.changed;
  }
}

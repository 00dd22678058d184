// A conversation is a room or a private talk with one nick: its own scrollback (an <ol>
// kept while another one is shown), sorted by the server's ids with every id shown once,
// day separators, an unread marker line, and its unread and mention counts.

import {dateOf, dayKey, dayLabel, el, key} from "./format.js";

export const MAX_ENTRIES = 2000;

export const roomId = (room) => key(room);
export const privateId = (nick) => "@" + key(nick);

let localSeq = 0;

export class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" or "private"
    this.name = name; // "#dev", or the other nick
    this.id = kind === "room" ? roomId(name) : privateId(name);
    this.list = el("ol", "scrollback");
    this.list.dataset.conv = name;
    this.entries = []; // {id, seq, li, date}, ascending by (id, seq)
    this.ids = new Set();
    this.lastId = 0; // the highest server id shown here
    this.firstId = 0; // the lowest: older history is asked for before it
    this.olderDone = false; // nothing older to load
    this.loadingOlder = false;
    this.records = new Map(); // message id -> record (messages.js), to apply changes to
    this.unread = 0;
    this.mentions = 0;
    this.marker = null;
    this.readId = 0; // the user's read marker here (from any of its connections)
    this.readSent = 0; // the newest id this page told the server it read
    this.joined = false;
    this.topic = "";
    this.members = [];
    this.speakers = []; // nicks that spoke here, most recent first (for Tab completion)
    this.scrollTop = null; // null: stuck to the bottom
  }

  /** Insert `li` for an event with server id `id` (or a local line, `id` null, placed
   * after everything shown so far). Returns false, inserting nothing, for an id already
   * shown. */
  insert(li, id, ts) {
    const date = dateOf(ts);
    let entry;
    if (typeof id === "number") {
      if (this.ids.has(id)) return false;
      this.ids.add(id);
      entry = {id, seq: 0, li, date};
      this.lastId = Math.max(this.lastId, id);
      this.firstId = this.firstId ? Math.min(this.firstId, id) : id;
    } else {
      const last = this.entries[this.entries.length - 1];
      entry = {id: last ? last.id : 0, seq: ++localSeq, li, date};
    }
    li.dataset.id = String(entry.id);
    const at = this.position(entry);
    this.entries.splice(at, 0, entry);
    const next = this.entries[at + 1];
    this.list.insertBefore(li, next ? next.li : null);
    if (this.entries.length > MAX_ENTRIES) this.trim();
    this.fixDays(at);
    return true;
  }

  position(entry) {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this.entries[mid];
      if (other.id < entry.id || (other.id === entry.id && other.seq <= entry.seq)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  trim() {
    while (this.entries.length > MAX_ENTRIES) {
      const gone = this.entries.shift();
      this.removeSeparator(gone.li);
      gone.li.remove();
      this.ids.delete(gone.id);
      if (gone.seq === 0) this.records.delete(gone.id);
    }
    this.firstId = this.entries.find((e) => e.seq === 0)?.id || this.lastId;
    this.olderDone = false;
    if (this.entries.length) this.fixDays(0);
  }

  removeSeparator(li) {
    const prev = li.previousElementSibling;
    if (prev && prev.classList.contains("day")) prev.remove();
  }

  /** Day separators around the entry at `at`: before it, and before the one after it. */
  fixDays(at) {
    for (const i of [at, at + 1]) {
      const entry = this.entries[i];
      if (!entry) continue;
      const before = this.entries[i - 1];
      const needed = !before || dayKey(before.date) !== dayKey(entry.date);
      let prev = entry.li.previousElementSibling;
      if (prev && prev.classList.contains("unread-marker")) prev = prev.previousElementSibling;
      const has = prev && prev.classList.contains("day") ? prev : null;
      if (needed && !has) {
        const day = el("li", "day", dayLabel(entry.date));
        day.setAttribute("role", "separator");
        this.list.insertBefore(day, entry.li);
      } else if (!needed && has) {
        has.remove();
      } else if (has) {
        has.textContent = dayLabel(entry.date);
      }
    }
  }

  /** A line the user has not seen: counted, and the first one since the conversation
   * was last read gets the "new messages" marker line above it. */
  countUnread(li, mention) {
    li.classList.add("unseen");
    if (this.unread === 0) {
      if (!this.marker) {
        this.marker = el("li", "unread-marker", "new messages");
        this.marker.setAttribute("role", "separator");
      }
      this.list.insertBefore(this.marker, li);
    }
    this.unread += 1;
    if (mention) this.mentions += 1;
  }

  markRead() {
    for (const li of this.list.querySelectorAll("li.unseen")) li.classList.remove("unseen");
    this.unread = 0;
    this.mentions = 0;
  }

  /** The newest message shown here (what a `read` marker names), or 0. */
  newestMessageId() {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const id = this.entries[i].id;
      if (this.entries[i].seq === 0 && this.records.has(id)) return id;
    }
    return 0;
  }

  /** The user read up to `id` here (on another device, say): the unread count and the
   * "new messages" marker are worked out again from the messages after it. */
  readUpTo(id, me) {
    if (!(id > this.readId)) return false;
    this.readId = id;
    let first = null;
    this.unread = 0;
    this.mentions = 0;
    for (const [msgId, rec] of this.records) {
      if (msgId <= id || key(rec.nick) === key(me) || !rec.li.classList.contains("unseen")) {
        rec.li.classList.remove("unseen");
        continue;
      }
      this.unread += 1;
      if (rec.li.classList.contains("mention")) this.mentions += 1;
      if (!first || msgId < first.id) first = rec;
    }
    if (first) this.list.insertBefore(this.marker, first.li);
    else if (this.marker) this.marker.remove();
    return true;
  }

  spoke(nick) {
    this.speakers = [nick, ...this.speakers.filter((n) => key(n) !== key(nick))].slice(0, 50);
  }
}

// Typing notices, both ways, as plain state (no DOM, no socket): what to send while the
// user types (thinned: the server and everyone's screens need news every few seconds, not
// per key), and who is typing where (each notice expires unless renewed).

import {key} from "./format.js";

/** While typing, `active: true` is sent again after this long (and never more often). */
export const RESEND_MS = 3000;
/** Someone's "is typing" goes away after this long without news from them. */
export const EXPIRE_MS = 6000;

/** Decides the `typing` frames for what the message box holds. `send(room, active)`
 * sends one. */
export class TypingSender {
  constructor(send, now = () => Date.now()) {
    this.send = send;
    this.now = now;
    this.room = null; // where `active: true` was last sent and not taken back
    this.sentAt = 0;
  }

  /** The message box of `room` (null: not a room) now holds `value`. */
  update(room, value) {
    const typing = room !== null && value.trim() !== "" && !/^\/(?!\/)/.test(value);
    if (!typing) {
      this.stop();
      return;
    }
    if (this.room !== room) this.stop();
    if (this.room === room && this.now() - this.sentAt < RESEND_MS) return;
    this.room = room;
    this.sentAt = this.now();
    this.send(room, true);
  }

  /** The line was sent: its message tells the others the typing is over. */
  sent() {
    this.room = null;
  }

  /** Typing stopped (box cleared, another conversation shown): say so if it was told. */
  stop() {
    if (this.room === null) return;
    const room = this.room;
    this.room = null;
    this.send(room, false);
  }
}

/** Who is typing in each room, from `typing` events; `onChange()` is called when the
 * set changes, expiries included. */
export class TypingBoard {
  constructor(onChange, now = () => Date.now()) {
    this.onChange = onChange;
    this.now = now;
    this.rooms = new Map(); // room key -> Map(nick key -> {nick, until})
    this.timer = null;
  }

  event(roomKey, nick, active) {
    const typists = this.rooms.get(roomKey) || new Map();
    if (active) typists.set(key(nick), {nick, until: this.now() + EXPIRE_MS});
    else if (!typists.delete(key(nick))) return;
    this.rooms.set(roomKey, typists);
    this.changed();
  }

  /** `nick` said something in the room: it is not typing any more. */
  stopped(roomKey, nick) {
    const typists = this.rooms.get(roomKey);
    if (typists && typists.delete(key(nick))) this.changed();
  }

  /** The nicks typing in a room now, in the order they started. */
  typing(roomKey) {
    const now = this.now();
    const typists = this.rooms.get(roomKey);
    return typists ? [...typists.values()].filter((t) => t.until > now).map((t) => t.nick) : [];
  }

  clear() {
    this.rooms.clear();
    this.changed();
  }

  changed() {
    const now = this.now();
    let next = Infinity;
    for (const [roomKey, typists] of this.rooms) {
      for (const [k, t] of typists) {
        if (t.until <= now) typists.delete(k);
        else next = Math.min(next, t.until);
      }
      if (!typists.size) this.rooms.delete(roomKey);
    }
    clearTimeout(this.timer);
    this.timer = next === Infinity ? null : setTimeout(() => this.changed(), next - now + 10);
    this.onChange();
  }
}

/** "alice is typing…", "alice and bob are typing…", "4 people are typing…", or "". */
export function typingText(nicks) {
  if (!nicks.length) return "";
  if (nicks.length === 1) return `${nicks[0]} is typing…`;
  if (nicks.length === 2) return `${nicks[0]} and ${nicks[1]} are typing…`;
  if (nicks.length === 3) return `${nicks[0]}, ${nicks[1]} and ${nicks[2]} are typing…`;
  return `${nicks.length} people are typing…`;
}

// The message box: Up/Down through the lines sent (keeping the half-typed one), and Tab
// completion of nicks, rooms and commands (Tab again cycles through the matches).

import {key} from "./format.js";

export class InputHistory {
  constructor(max = 200) {
    this.max = max;
    this.lines = [];
    this.pos = 0; // lines.length: the draft
    this.draft = "";
  }

  push(line) {
    if (this.lines[this.lines.length - 1] !== line) this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
    this.pos = this.lines.length;
    this.draft = "";
  }

  /** The older line to show instead of `current`, or null at the oldest. */
  up(current) {
    if (this.pos === 0) return null;
    if (this.pos === this.lines.length) this.draft = current;
    this.pos -= 1;
    return this.lines[this.pos];
  }

  /** The newer line (the draft typed before going up, at the end), or null. */
  down() {
    if (this.pos >= this.lines.length) return null;
    this.pos += 1;
    return this.pos === this.lines.length ? this.draft : this.lines[this.pos];
  }
}

export class Completer {
  constructor() {
    this.cycle = null; // {start, matches, index, value}: the completion Tab goes on with
  }

  reset() {
    this.cycle = null;
  }

  /**
   * Complete the word before `caret` in `value`. `sources` gives {commands, nicks, rooms}
   * (nicks most likely first). Returns {value, caret}, or null when there is nothing to
   * complete (then Tab can move the focus as usual).
   */
  complete(value, caret, sources) {
    const c = this.cycle;
    if (c && c.value === value && c.caret === caret && c.matches.length > 1) {
      c.index = (c.index + 1) % c.matches.length;
      return this.apply(c);
    }
    const start = value.slice(0, caret).search(/\S*$/);
    const word = value.slice(start, caret);
    if (!word) return null;
    let matches;
    if (word.startsWith("/") && start === 0) {
      const prefix = key(word.slice(1));
      matches = sources.commands.filter((name) => key(name).startsWith(prefix))
        .map((name) => `/${name} `);
    } else if (word.startsWith("#")) {
      matches = sources.rooms.filter((room) => key(room).startsWith(key(word)))
        .map((room) => room + " ");
    } else {
      const prefix = key(word.replace(/^@/, ""));
      const seen = new Set();
      matches = [];
      for (const nick of sources.nicks) {
        if (seen.has(key(nick)) || !key(nick).startsWith(prefix)) continue;
        seen.add(key(nick));
        matches.push(nick + (start === 0 ? ": " : " "));
      }
    }
    if (!matches.length) return null;
    this.cycle = {start, rest: value.slice(caret), before: value.slice(0, start), matches,
      index: 0};
    return this.apply(this.cycle);
  }

  apply(c) {
    const head = c.before + c.matches[c.index];
    c.value = head + c.rest;
    c.caret = head.length;
    return {value: c.value, caret: c.caret};
  }
}

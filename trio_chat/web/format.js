// Pure helpers: names, times, mentions, and text turned into DOM nodes (links included).
// User text only ever becomes text nodes and the href of links checked here: never HTML.

/** How the server compares names (close enough for the page: case and width). */
export const key = (name) => String(name ?? "").normalize("NFKC").toLowerCase();

export const roomName = (raw) => {
  const r = String(raw ?? "").trim();
  return r.startsWith("#") ? r : "#" + r;
};

export const text = (s) => document.createTextNode(String(s));

export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children.map((c) => (typeof c === "string" ? text(c) : c)));
  return node;
}

export function hue(nick) {
  let h = 0;
  for (const ch of key(nick)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// The server's rule for a line naming a user (docs/protocol.md, "Search and mentions"):
// one of its words holds the nick as a run of nick characters (`alice`, `@alice:`,
// `alice's`), compared case and accents aside (the server's look-alike folding, `al1ce`,
// is not copied here). A word longer than 32 characters (a link) names nobody.
const NICK_RUN = /[\p{L}\p{N}_\-[\]\\`^{}|]+/gu;
const fold = (s) => s.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();

/** Does `message` (a line's text) name `nick`? */
export function mentions(message, nick) {
  if (!nick) return false;
  const me = fold(nick);
  for (const word of String(message).split(/\s+/u)) {
    if ([...word].length > 32) continue;
    for (const run of word.match(NICK_RUN) || []) {
      if (/^[\p{N}-]/u.test(run)) continue;
      if (fold(run) === me) return true;
    }
  }
  return false;
}

const pad = (n) => (n < 10 ? "0" + n : String(n));

export const dateOf = (ts) => (typeof ts === "number" ? new Date(ts * 1000) : new Date());
export const clock = (date) => pad(date.getHours()) + ":" + pad(date.getMinutes());
export const dayKey = (date) => `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;

export function dayLabel(date, now = new Date()) {
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  const long = date.toLocaleDateString(undefined,
    {weekday: "long", year: "numeric", month: "long", day: "numeric"});
  if (dayKey(date) === dayKey(now)) return "Today, " + long;
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday, " + long;
  return long;
}

// http(s) URLs only: anything else (javascript:, data:, ...) stays plain text.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/giu;
const TRAILING = /[.,;:!?)\]}]+$/u;

/** The href for `candidate` if it is a safe http(s) URL, else null. */
export function safeHref(candidate) {
  let url;
  try { url = new URL(candidate); } catch { return null; }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** `message` as text nodes and <a> links, for appending to an element. */
export function linkified(message) {
  const nodes = [];
  let last = 0;
  for (const match of String(message).matchAll(URL_RE)) {
    let found = match[0];
    const trail = found.match(TRAILING);
    // Keep a closing bracket that closes one opened inside the URL (wiki links).
    if (trail && !(trail[0] === ")" && found.includes("("))) {
      found = found.slice(0, -trail[0].length);
    }
    const href = safeHref(found);
    if (!href) continue;
    if (match.index > last) nodes.push(text(message.slice(last, match.index)));
    const a = el("a", "link", found);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    nodes.push(a);
    last = match.index + found.length;
  }
  if (last < message.length) nodes.push(text(message.slice(last)));
  return nodes;
}

// What the page remembers across reloads, in localStorage: the nickname and the rooms.
// Never a password (that stays in memory, for this tab's reconnections only).

const PREFIX = "trio-chat:";

function read(name, fallback) {
  try {
    const raw = window.localStorage.getItem(PREFIX + name);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(name, value) {
  try {
    window.localStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch {
    // Private mode or storage full: the page works, it only forgets.
  }
}

export const loadNick = () => {
  const nick = read("nick", "");
  return typeof nick === "string" ? nick : "";
};
export const saveNick = (nick) => write("nick", nick);

export const loadRooms = () => {
  const rooms = read("rooms", []);
  return Array.isArray(rooms) ? rooms.filter((r) => typeof r === "string") : [];
};
export const saveRooms = (rooms) => write("rooms", rooms);

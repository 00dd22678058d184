"""The IRC commands the hub acts on (PRIVMSG, JOIN, PART, TOPIC, AWAY, KICK, OPER, MODE,
CHATHISTORY and the plugins' commands), each handed over as the client frame every
transport sends, and the hub's answers to them as the numerics IRC clients expect."""

from __future__ import annotations

from ..names import InvalidName, name_key, normalize_room
from ..protocol import (
    Command,
    Error,
    History,
    HistoryRequest,
    Info,
    Say,
)
from . import numerics as n
from .base import CHATHISTORY_LIMIT, Asked, SessionBase, Step, strip_formatting, word
from .message import IrcMessage, ctcp_decode, format_message
from .render import (
    history_line,
    hostmask,
)


class Chatting(SessionBase):
    """Commands that go to the hub, and the words of its answers."""

    def _privmsg(self, msg: IrcMessage, step: Step) -> None:
        silent = msg.command == "NOTICE"
        if not msg.params or not msg.params[0]:
            if not silent:
                step.replies.append(
                    self.numeric(n.ERR_NORECIPIENT, f"No recipient given ({msg.command})")
                )
            return
        if len(msg.params) < 2 or not msg.params[1]:
            if not silent:
                step.replies.append(self.numeric(n.ERR_NOTEXTTOSEND, "No text to send"))
            return
        raw = msg.params[1]
        ctcp = ctcp_decode(raw)
        for target in msg.params[0].split(",")[:4]:
            if not target:
                continue
            asked = Asked(msg.command, target, silent=silent)
            if ctcp is not None:
                kind, args = ctcp
                if kind != "ACTION":
                    if not silent:
                        step.replies.append(self.notice(f"CTCP {kind} is not relayed here"))
                    continue
                text = strip_formatting(args).strip()
                if not text:
                    continue
                if target.startswith("#"):
                    step.frames.append(
                        Command(name="me", args=text, room=target, ref=self._ask(asked))
                    )
                else:
                    line = f"* {self.nick} {text}"
                    step.frames.append(
                        Command(name="msg", args=f"{target} {line}", ref=self._ask(asked))
                    )
                self._sent_from_here(target, 1)
                continue
            text = strip_formatting(raw)
            if not text.strip():
                continue
            if target.startswith("#") and silent:
                step.frames.append(
                    Command(name="notice", args=text, room=target, ref=self._ask(asked))
                )
            elif target.startswith("#"):
                step.frames.append(Say(text=text, room=target, ref=self._ask(asked)))
            else:
                step.frames.append(
                    Command(name="msg", args=f"{target} {text}", ref=self._ask(asked))
                )
            self._sent_from_here(target, 1)

    def _sent_from_here(self, target: str, change: int) -> None:
        """Count the lines this connection sent to ``target`` whose echo is on its way.

        The hub sends a user's lines back to all of its connections: the one that sent a
        line leaves its echo out (unless it asked for ``echo-message``), while the user's
        other connections (a phone beside this laptop) show it, as a bouncer does. Lines
        are counted, not matched by text, which a plugin's filter may have changed."""
        key = name_key(target)
        count = self._unechoed.get(key, 0) + change
        if count > 0:
            self._unechoed[key] = count
        else:
            self._unechoed.pop(key, None)

    def _join(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters"))
            return
        if msg.params[0] == "0":
            user = self.view.user(self.nick or "")
            for channel in user.channels if user else ():
                step.frames.append(
                    Command(name="part", args=channel, ref=self._ask(Asked("PART", channel)))
                )
            return
        for channel in msg.params[0].split(","):
            if not channel:
                continue
            problem = _channel_problem(channel)
            if problem is not None:
                step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, problem))
                continue
            step.frames.append(
                Command(name="join", args=channel, ref=self._ask(Asked("JOIN", channel)))
            )

    def _part(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters"))
            return
        for channel in msg.params[0].split(","):
            if not channel:
                continue
            info = self.view.channel(channel) if channel.startswith("#") else None
            if info is None:
                step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
                continue
            reason = strip_formatting(msg.param(1)).strip()
            args = f"{info.name} {reason}" if reason else info.name
            step.frames.append(
                Command(name="part", args=args, ref=self._ask(Asked("PART", info.name)))
            )

    def _topic(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(
                self.numeric(n.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
            )
            return
        channel = msg.params[0]
        info = self.view.channel(channel) if channel.startswith("#") else None
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
            return
        if len(msg.params) < 2:
            step.replies.extend(self._topic_lines(info))
            return
        if not self._in(info):
            step.replies.append(
                self.numeric(n.ERR_NOTONCHANNEL, info.name, "You're not on that channel")
            )
            return
        text = strip_formatting(msg.params[1]).strip() or "-"
        step.frames.append(
            Command(
                name="topic", args=text, room=info.name, ref=self._ask(Asked("TOPIC", info.name))
            )
        )

    def _away(self, msg: IrcMessage, step: Step) -> None:
        reason = strip_formatting(msg.param(0)).strip()
        step.frames.append(
            Command(name="away", args=reason, ref=self._ask(Asked("AWAY", detail=reason)))
        )

    def _kick(self, msg: IrcMessage, step: Step) -> None:
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters"))
            return
        channel, nick = msg.params[0], msg.params[1].split(",")[0]
        reason = strip_formatting(msg.param(2)).strip()
        info = self.view.channel(channel) if channel.startswith("#") else None
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel"))
            return
        args = f"{nick} {reason}".strip()
        step.frames.append(
            Command(
                name="kick",
                args=args,
                room=info.name,
                ref=self._ask(Asked("KICK", info.name, nick)),
            )
        )

    def _oper(self, msg: IrcMessage, step: Step) -> None:
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "OPER", "Not enough parameters"))
            return
        step.frames.append(Command(name="oper", args=msg.params[1], ref=self._ask(Asked("OPER"))))

    def _mode(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters"))
            return
        target = msg.params[0]
        if not target.startswith("#"):
            self._user_mode(target, msg, step)
            return
        info = self.view.channel(target)
        if info is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHCHANNEL, target, "No such channel"))
            return
        if len(msg.params) < 2:
            step.replies.append(self.numeric(n.RPL_CHANNELMODEIS, info.name, "+nt"))
            return
        changes = msg.params[1]
        args = list(msg.params[2:])
        sign = "+"
        for letter in changes:
            if letter in "+-":
                sign = letter
                continue
            if letter in "bq" and not args:
                if letter == "b":
                    for nick in info.banned:
                        step.replies.append(self.numeric(n.RPL_BANLIST, info.name, f"{nick}!*@*"))
                    step.replies.append(
                        self.numeric(n.RPL_ENDOFBANLIST, info.name, "End of channel ban list")
                    )
                else:
                    step.replies.append(
                        self.numeric("729", info.name, "q", "End of channel quiet list")
                    )
                continue
            if letter in "nt":
                continue  # always on; nothing to change
            command = _MODE_COMMANDS.get((sign, letter))
            if command is None:
                step.replies.append(
                    self.numeric(n.ERR_UNKNOWNMODE, letter, "is an unknown mode char to me")
                )
                continue
            if not args:
                step.replies.append(
                    self.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                )
                return
            nick = word(args.pop(0).partition("!")[0])
            asked = Asked("MODE", info.name, f"{sign}{letter} {nick}")
            step.frames.append(
                Command(name=command, args=nick, room=info.name, ref=self._ask(asked))
            )

    def _user_mode(self, target: str, msg: IrcMessage, step: Step) -> None:
        if target.casefold() != (self.nick or "").casefold():
            step.replies.append(
                self.numeric(n.ERR_USERSDONTMATCH, "Can't change mode for other users")
            )
            return
        changes = msg.param(1)
        if not changes:
            step.replies.append(self.numeric(n.RPL_UMODEIS, "+"))
            return
        if any(ch not in "+-iw" for ch in changes):
            step.replies.append(self.numeric(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag"))

    def _chathistory(self, msg: IrcMessage, step: Step) -> None:
        """``CHATHISTORY LATEST|BEFORE|AFTER <target> <*|msgid=ID> <limit>`` (IRCv3
        draft/chathistory), from the hub's history: message ids are our ``msgid``s."""
        sub, target, where, count = (msg.param(i) for i in range(4))
        sub = sub.upper()

        def fail(code: str, text: str, *context: str) -> None:
            words = [word(c) for c in context]
            step.replies.append(
                format_message("FAIL", "CHATHISTORY", code, *words, text, source=self.server)
            )

        if not self.view.keeps_accounts:
            fail("INVALID_PARAMS", "this server keeps no history", sub or "*")
            return
        if sub not in ("LATEST", "BEFORE", "AFTER"):
            fail("INVALID_PARAMS", "LATEST, BEFORE and AFTER are supported", sub or "*")
            return
        if not target or not count.isdigit() or int(count) < 1:
            fail("INVALID_PARAMS", "usage: CHATHISTORY " + sub + " <target> <ref> <limit>", sub)
            return
        before = after = None
        if where != "*" or sub != "LATEST":
            kind, _, value = where.partition("=")
            if kind != "msgid" or not value.isdigit():
                fail("INVALID_MSGREFTYPE", "only msgid= references are supported", sub, where)
                return
            if sub == "BEFORE":
                before = int(value)
            else:
                after = int(value)
        limit = min(int(count), CHATHISTORY_LIMIT)
        ref = self._ask(Asked("CHATHISTORY", target))
        if target.startswith("#"):
            step.frames.append(
                HistoryRequest(room=target, before=before, after=after, limit=limit, ref=ref)
            )
        else:
            step.frames.append(
                HistoryRequest(with_nick=target, before=before, after=after, limit=limit, ref=ref)
            )

    def _history_batch(self, event: History, target: str, ref: str) -> bytes:
        """A ``CHATHISTORY`` answer: the page as a ``chathistory`` batch (with ``batch``)."""
        flavour = self.flavour
        batch = ref if "batch" in self.caps else None
        lines = [
            history_line(item, flavour, self.nick or "", batch=batch) for item in event.messages
        ]
        if batch is None:
            return b"".join(lines)
        start = format_message(
            "BATCH", f"+{batch}", "chathistory", word(target), source=self.server
        )
        end = format_message("BATCH", f"-{batch}", source=self.server)
        return start + b"".join(lines) + end

    def _plugin_command(self, msg: IrcMessage, step: Step) -> None:
        """Any other command is the slash-command of that name, if there is one
        (``/quote roll 2d6`` runs ``/roll 2d6``); replies come as NOTICEs."""
        name = msg.command.lower()
        if not name.isalpha():
            step.replies.append(self.numeric(n.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command"))
            return
        args = " ".join(msg.params)
        ref = self._ask(Asked(msg.command))
        step.frames.append(Command(name=name, args=args, ref=ref))

    def _info(self, event: Info) -> bytes:
        asked = self._asked.pop(event.ref, None) if event.ref else None
        data = event.data or {}
        if asked is None:
            if data.get("event") == "mode":
                return self._mode_line(data)
            if data.get("event") == "away":
                return self._away_line(data)
            return self.notice(event.text)
        command = asked.command
        if command in ("JOIN", "PART", "TOPIC", "KICK", "NICK"):
            return b""  # the JOIN/PART/TOPIC/KICK/NICK line itself says it
        if command == "AWAY":
            if data.get("away"):
                return self.numeric(n.RPL_NOWAWAY, "You have been marked as being away")
            return self.numeric(n.RPL_UNAWAY, "You are no longer marked as being away")
        if command == "MODE":
            info = self.view.channel(asked.target)
            if info is not None and self._in(info):
                return b""  # the room's MODE line (:meth:`_mode_line`) says it
            change, _, nick = asked.detail.partition(" ")
            mask = f"{nick}!*@*" if change.endswith("b") else nick
            return format_message(
                "MODE", asked.target, change, mask, source=hostmask(self.nick or "*")
            )
        if command == "OPER":
            return self.numeric(n.RPL_YOUREOPER, "You are now an IRC operator")
        if command in ("PRIVMSG", "NOTICE"):
            return b"" if asked.silent else self.notice(event.text)  # e.g. "X is away"
        return self.notice(event.text)

    def _mode_line(self, data: dict[str, object]) -> bytes:
        """A room's rule change (the hub's ``mode`` notice) as the ``MODE`` line an IRC
        server sends every member: ``+o``/``-o``, ``+b``/``-b`` with a ``nick!*@*`` mask,
        ``+q``/``-q`` for a mute; from the operator, or the server when none is named."""
        letter = _RULE_LETTERS.get(str(data.get("rule")))
        room, nick, by = data.get("room"), data.get("nick"), data.get("by")
        if letter is None or not isinstance(room, str) or not isinstance(nick, str):
            return b""
        mask = f"{nick}!*@*" if letter == "b" else nick
        sign = "+" if data.get("on") else "-"
        source = hostmask(by) if isinstance(by, str) else self.server
        return format_message("MODE", room, f"{sign}{letter}", mask, source=source)

    def _away_line(self, data: dict[str, object]) -> bytes:
        """Someone sharing a channel went away (``AWAY :reason``) or came back (``AWAY``),
        for a client with ``away-notify`` (the hub tells no other)."""
        nick, away = data.get("nick"), data.get("away")
        if not isinstance(nick, str) or "away-notify" not in self.caps:
            return b""
        params = (away,) if isinstance(away, str) and away else ()
        return format_message("AWAY", *params, source=hostmask(nick))

    def _error(self, event: Error) -> bytes:
        asked = self._asked.pop(event.ref, None) if event.ref else None
        code, text = event.code, event.text
        if event.ref == "irc-login":
            return self._login_refused(code, text)
        if asked is None:
            return self.notice(text)
        command, target = asked.command, asked.target
        if command in ("PRIVMSG", "NOTICE"):
            self._sent_from_here(target, -1)  # refused: no echo comes
        if asked.silent:
            return b""
        if command in ("PRIVMSG", "NOTICE"):
            if code == "no_such_nick":
                return self.numeric(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            if code in ("not_in_room", "not_allowed", "no_such_room"):
                return self.numeric(
                    n.ERR_CANNOTSENDTOCHAN, target, f"Cannot send to channel ({text})"
                )
            return self.notice(text)
        if command == "NICK":
            if code in ("nick_taken", "nick_registered"):
                return self.numeric(
                    n.ERR_NICKNAMEINUSE, target, f"Nickname is already in use ({text})"
                )
            if code in ("bad_nick", "bad_name"):
                return self.numeric(n.ERR_ERRONEUSNICKNAME, target, f"Erroneous nickname: {text}")
        if command == "JOIN":
            if code == "not_allowed":
                return self.numeric(
                    n.ERR_BANNEDFROMCHAN, target, f"Cannot join channel (+b): {text}"
                )
            if code in ("bad_room", "bad_name"):
                return self.numeric(n.ERR_NOSUCHCHANNEL, target, text)
        if command == "PART" and code == "not_in_room":
            return self.numeric(n.ERR_NOTONCHANNEL, target, "You're not on that channel")
        if command in ("TOPIC", "KICK", "MODE"):
            if code == "not_allowed":
                return self.numeric(n.ERR_CHANOPRIVSNEEDED, target, "You're not channel operator")
            if code == "no_such_nick":
                who = asked.detail.split(" ")[-1]
                return self.numeric(
                    n.ERR_USERNOTINCHANNEL, who, target, "They aren't on that channel"
                )
        if command == "CHATHISTORY":
            return format_message(
                "FAIL", "CHATHISTORY", "MESSAGE_ERROR", word(target), text, source=self.server
            )
        if command == "OPER" and code == "not_allowed":
            return self.numeric(n.ERR_PASSWDMISMATCH, "Password incorrect")
        if code == "unknown_command":
            return self.numeric(n.ERR_UNKNOWNCOMMAND, command, "Unknown command")
        return self.notice(text)

    def _login_refused(self, code: str, text: str) -> bytes:
        """The hub refused the registration's ``hello``: ask for another nick, or, for a
        wrong password, say so (the client then has to reconnect, as on any IRC server)."""
        self._logging_in = False
        wanted = self.nick or "*"
        if code in ("nick_taken", "nick_registered", "too_many_connections"):
            self.nick = None
            self._sasl_login = None
            return self.numeric(n.ERR_NICKNAMEINUSE, wanted, f"Nickname is already in use ({text})")
        if code in ("bad_nick", "bad_name"):
            self.nick = None
            return self.numeric(n.ERR_ERRONEUSNICKNAME, wanted, f"Erroneous nickname: {text}")
        # A wrong password ends the connection (modern.ircdocs.horse: ERR_PASSWDMISMATCH,
        # then ERROR and close): no other nick would make it right.
        self.closing = True
        return self.numeric(n.ERR_PASSWDMISMATCH, f"Password incorrect: {text}") + (
            format_message("ERROR", f"Closing link: {text}")
        )


def _channel_problem(channel: str) -> str | None:
    """Why ``channel`` is not a channel name the hub takes, or ``None``."""
    if not channel.startswith("#"):
        return "No such channel (channel names start with #)"
    try:
        normalize_room(channel)
    except InvalidName as exc:
        return f"No such channel: {exc}"
    return None


_MODE_COMMANDS = {
    ("+", "o"): "op",
    ("-", "o"): "deop",
    ("+", "b"): "ban",
    ("-", "b"): "unban",
    ("+", "q"): "mute",
    ("-", "q"): "unmute",
}

#: The IRC channel mode of each of the hub's room rules.
_RULE_LETTERS = {"operator": "o", "banned": "b", "muted": "q"}

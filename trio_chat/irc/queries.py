"""The IRC commands answered from the view of the chat at once, without the hub: NAMES,
WHO, WHOIS, ISON, USERHOST, LIST, MOTD and LUSERS (and the lines a join or the welcome
reuse)."""

from __future__ import annotations

from . import numerics as n
from .base import SessionBase, Step
from .message import IrcMessage
from .render import USER_HOST
from .view import ChannelInfo, MemberInfo, UserInfo


def identity(who: MemberInfo | UserInfo) -> tuple[str, str]:
    """The username and real name shown for a user: an IRC user's own (from ``USER``,
    the username with ``~`` as servers mark one no ident server vouched for), else the
    nick for both."""
    if who.username:
        return "~" + who.username, who.realname or who.nick
    return who.nick, who.realname or who.nick


class Queries(SessionBase):
    """The questions an IRC client asks about rooms and users."""

    def _names(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.RPL_ENDOFNAMES, "*", "End of /NAMES list"))
            return
        for channel in msg.params[0].split(","):
            info = self.view.channel(channel) if channel.startswith("#") else None
            if info is None:
                step.replies.append(self.numeric(n.RPL_ENDOFNAMES, channel, "End of /NAMES list"))
            else:
                step.replies.extend(self.names_lines(info))

    def names_lines(self, info: ChannelInfo) -> list[bytes]:
        """353 lines (as many as the names need) and the 366 for a channel."""
        names = [("@" if m.op else "") + m.nick for m in info.members]
        lines = []
        head = f":{self.server} {n.RPL_NAMREPLY} {self.me} = {info.name} :"
        budget = 510 - len(head.encode())
        chunk: list[str] = []
        size = 0
        for name in names:
            cost = len(name.encode()) + 1
            if chunk and size + cost > budget:
                lines.append(self.numeric(n.RPL_NAMREPLY, "=", info.name, " ".join(chunk)))
                chunk, size = [], 0
            chunk.append(name)
            size += cost
        if chunk:
            lines.append(self.numeric(n.RPL_NAMREPLY, "=", info.name, " ".join(chunk)))
        lines.append(self.numeric(n.RPL_ENDOFNAMES, info.name, "End of /NAMES list"))
        return lines

    def _who(self, msg: IrcMessage, step: Step) -> None:
        mask = msg.param(0, "*")
        if mask.startswith("#"):
            info = self.view.channel(mask)
            for member in info.members if info else ():
                step.replies.append(
                    self._who_line(info.name if info else mask, member, member.op, member.away)
                )
        else:
            user = self.view.user(mask)
            if user is not None:
                channel = user.channels[0] if user.channels else "*"
                step.replies.append(
                    self._who_line(channel, user, channel in user.ops_in, user.away)
                )
        step.replies.append(self.numeric(n.RPL_ENDOFWHO, mask, "End of WHO list"))

    def _who_line(
        self, channel: str, who: MemberInfo | UserInfo, op: bool, away: str | None
    ) -> bytes:
        flags = ("G" if away else "H") + ("@" if op else "")
        username, realname = identity(who)
        return self.numeric(
            n.RPL_WHOREPLY,
            channel,
            username,
            USER_HOST,
            self.server,
            who.nick,
            flags,
            f"0 {realname}",
        )

    def _whois(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NONICKNAMEGIVEN, "No nickname given"))
            return
        nick = msg.params[-1].split(",")[0]
        user = self.view.user(nick)
        if user is None:
            step.replies.append(self.numeric(n.ERR_NOSUCHNICK, nick, "No such nick/channel"))
            step.replies.append(self.numeric(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list"))
            return
        username, realname = identity(user)
        step.replies.append(
            self.numeric(n.RPL_WHOISUSER, user.nick, username, USER_HOST, "*", realname)
        )
        if user.channels:
            shown = " ".join(("@" if c in user.ops_in else "") + c for c in user.channels)
            step.replies.append(self.numeric(n.RPL_WHOISCHANNELS, user.nick, shown))
        step.replies.append(
            self.numeric(
                n.RPL_WHOISSERVER,
                user.nick,
                self.server,
                f"connected over {user.transport or 'chat'}",
            )
        )
        if user.admin:
            step.replies.append(
                self.numeric(n.RPL_WHOISOPERATOR, user.nick, "is a server administrator")
            )
        if user.away:
            step.replies.append(self.numeric(n.RPL_AWAY, user.nick, user.away))
        if user.account:
            step.replies.append(
                self.numeric(n.RPL_WHOISACCOUNT, user.nick, user.nick, "is logged in as")
            )
        step.replies.append(self.numeric(n.RPL_ENDOFWHOIS, user.nick, "End of /WHOIS list"))

    def _ison(self, msg: IrcMessage, step: Step) -> None:
        if not msg.params:
            step.replies.append(self.numeric(n.ERR_NEEDMOREPARAMS, "ISON", "Not enough parameters"))
            return
        present = []
        for word in " ".join(msg.params).split():
            user = self.view.user(word)
            if user is not None:
                present.append(user.nick)
        step.replies.append(self.numeric(n.RPL_ISON, " ".join(present)))

    def _userhost(self, msg: IrcMessage, step: Step) -> None:
        found = []
        for nick in msg.params[:5]:
            user = self.view.user(nick)
            if user is not None:
                username = identity(user)[0]
                away = "-" if user.away else "+"
                found.append(f"{user.nick}={away}{username}@{USER_HOST}")
        step.replies.append(self.numeric(n.RPL_USERHOST, " ".join(found)))

    def _list(self, msg: IrcMessage, step: Step) -> None:
        wanted = {c.casefold() for c in msg.param(0).split(",") if c}
        step.replies.append(self.numeric(n.RPL_LISTSTART, "Channel", "Users  Name"))
        for info in sorted(self.view.channels(), key=lambda c: c.name.casefold()):
            if wanted and info.name.casefold() not in wanted:
                continue
            step.replies.append(
                self.numeric(n.RPL_LIST, info.name, str(len(info.members)), info.topic)
            )
        step.replies.append(self.numeric(n.RPL_LISTEND, "End of /LIST"))

    def _motd(self, msg: IrcMessage, step: Step) -> None:
        step.replies.extend(self.motd_lines())

    def motd_lines(self) -> list[bytes]:
        if not self.settings.motd:
            return [self.numeric(n.ERR_NOMOTD, "MOTD File is missing")]
        lines = [self.numeric(n.RPL_MOTDSTART, f"- {self.server} Message of the day - ")]
        lines += [self.numeric(n.RPL_MOTD, f"- {line}") for line in self.settings.motd]
        lines.append(self.numeric(n.RPL_ENDOFMOTD, "End of /MOTD command."))
        return lines

    def _lusers(self, msg: IrcMessage, step: Step) -> None:
        step.replies.extend(self.lusers_lines())

    def lusers_lines(self) -> list[bytes]:
        users = self.view.user_count()
        channels = len(self.view.channels())
        return [
            self.numeric(
                n.RPL_LUSERCLIENT, f"There are {users} users and 0 invisible on 1 servers"
            ),
            self.numeric(n.RPL_LUSERCHANNELS, str(channels), "channels formed"),
            self.numeric(n.RPL_LUSERME, f"I have {users} clients and 0 servers"),
            self.numeric(
                n.RPL_LOCALUSERS,
                str(users),
                str(users),
                f"Current local users {users}, max {users}",
            ),
            self.numeric(
                n.RPL_GLOBALUSERS,
                str(users),
                str(users),
                f"Current global users {users}, max {users}",
            ),
        ]

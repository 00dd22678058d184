"""IRC, without any I/O: the message grammar (:mod:`.message`), splitting long lines
(:mod:`.split`), numerics (:mod:`.numerics`), events as IRC lines (:mod:`.render`), and one
client's session (:mod:`.session`) over a read-only view of the chat (:mod:`.view`).

The trio transport around it is :mod:`trio_chat.transports.irc`; ``docs/irc.md`` is the
user's reference.
"""

"""Transports: thin trio tasks that move frames between sockets and the server.

Each transport turns its bytes into client frames with the sans-IO modules
(:mod:`trio_chat.protocol`, :mod:`trio_chat.framing`, :mod:`trio_chat.textmode`) and hands
them to :func:`trio_chat.transports.connection.run_connection`, which is the same for all.
"""

"""Chat history and accounts on SQLite (issue 4: nothing acknowledged is ever lost).

::

    async with Store.open("chat.db") as store:
        await store.append(StoredMessage.from_message(message))  # committed when it returns
        hub_fan_out(message)                                     # only then shown to anyone
        recent = await store.history("#lobby", after=last_seen_id)

:mod:`.schema` holds the versioned schema and migrations, :mod:`.db` the trio-facing
:class:`Store` (open and close, appends, history queries, accounts), :mod:`.writer` its
single writer task (batched commits, backpressure, the flush on close), :mod:`.sqlite` the
SQLite work its worker threads do (opening and checking a file, insert statements, what an
error means), :mod:`.records` the stored values, :mod:`.health` the counters and
rate-limited failure logs, :mod:`.accounts` password hashing and login throttling (pure).
"""

from .accounts import LoginThrottle as LoginThrottle
from .accounts import check_password as check_password
from .accounts import hash_password as hash_password
from .db import MAX_HISTORY_LIMIT as MAX_HISTORY_LIMIT
from .db import Store as Store
from .db import StoreStats as StoreStats
from .records import AccountExists as AccountExists
from .records import StoredKind as StoredKind
from .records import StoredMessage as StoredMessage
from .records import StoreError as StoreError
from .schema import SCHEMA_VERSION as SCHEMA_VERSION

"""A durable outbox for alert deliveries: one SQLite row per (receiver, alert event).

Alerts must reach their receivers even when a receiver is down for a while or the job
restarts, and must not reach them twice when the job replays its input after a
restart. So every delivery is first written here (the UNIQUE key makes a repeated
enqueue a no-op), and a dispatcher works the table off. Rows are leased while a POST
is in flight, so two dispatchers on one state directory never send the same row at
the same time, and a row whose dispatcher died mid-POST is retried once the lease ends.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    receiver TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    UNIQUE (receiver, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, state, id);
"""


@dataclass(frozen=True)
class Row:
    """A pending delivery, as handed to the dispatcher."""

    id: int
    receiver: str
    event_id: str
    body: bytes
    attempts: int  # including the attempt this row was just claimed for


class Outbox:
    """The outbox table in `path` (WAL mode), safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a delivered mark must survive a crash
        self._db.executescript(_SCHEMA)

    def add(self, receiver: str, event_id: str, body: bytes) -> bool:
        """Queue one delivery; False if this receiver already has this event (any state)."""
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO outbox"
                " (receiver, event_id, body, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (receiver, event_id) DO NOTHING",
                (receiver, event_id, body, now, now, now),
            )
        return cursor.rowcount == 1

    def retry_now(self, receivers: Iterable[str]) -> None:
        """Make every pending row of `receivers` due: a restart is the moment to try again."""
        names = list(receivers)
        with self._lock:
            self._db.execute(
                f"UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending'"
                f" AND receiver IN ({_marks(names)})",
                (time.time(), *names),
            )

    def claim(self, receiver: str, lease_seconds: float) -> Row | float | None:
        """Lease the receiver's oldest pending row if it is due.

        Rows of one receiver go out in order, so a "resolved" never overtakes its
        "firing". Returns the row, None when nothing is pending, or the time at which
        the oldest row becomes due.
        """
        now = time.time()
        with self._lock:
            head = self._db.execute(
                "SELECT id, event_id, body, attempts, max(next_attempt_at, lease_until) FROM outbox"
                " WHERE receiver = ? AND state = 'pending' ORDER BY id LIMIT 1",
                (receiver,),
            ).fetchone()
            if head is None:
                return None
            row_id, event_id, body, attempts, due = head
            if due > now:
                return float(due)
            claimed = self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, lease_until = ?, updated_at = ?"
                " WHERE id = ? AND state = 'pending' AND lease_until <= ?",
                (now + lease_seconds, now, row_id, now),
            ).rowcount
        if not claimed:
            return now
        return Row(row_id, receiver, event_id, bytes(body), attempts + 1)

    def delivered(self, row: Row) -> None:
        self._finish(row, DELIVERED, None)

    def failed(self, row: Row, error: str) -> None:
        """Give up on a row for good."""
        self._finish(row, FAILED, error)

    def retry_at(self, row: Row, when: float, error: str) -> None:
        """Release the lease and schedule the next attempt."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET next_attempt_at = ?, lease_until = 0, updated_at = ?,"
                " last_error = ? WHERE id = ?",
                (when, time.time(), error, row.id),
            )

    def depth(self, receivers: Iterable[str]) -> dict[str, int]:
        """Pending rows per receiver (zero for receivers with none)."""
        names = list(receivers)
        with self._lock:
            counted = self._db.execute(
                f"SELECT receiver, count(*) FROM outbox WHERE state = 'pending'"
                f" AND receiver IN ({_marks(names)}) GROUP BY receiver",
                names,
            ).fetchall()
        return {name: 0 for name in names} | dict(counted)

    def states(self) -> list[tuple[str, str, str, int]]:
        """(receiver, event_id, state, attempts) of every row, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT receiver, event_id, state, attempts FROM outbox ORDER BY id"
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _finish(self, row: Row, state: str, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = ?, lease_until = 0, updated_at = ?, last_error = ?"
                " WHERE id = ?",
                (state, time.time(), error, row.id),
            )


def _marks(names: list[str]) -> str:
    return ", ".join("?" * len(names))

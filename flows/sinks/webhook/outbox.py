"""A durable outbox for alert deliveries: one SQLite row per (receiver, URL, alert event).

Alerts must reach their receivers even when a receiver is down for a while or the job
restarts, and must not reach them twice when the job replays its input after a
restart. So every delivery is first written here (the UNIQUE key makes a repeated
enqueue a no-op), and a dispatcher works the table off. Rows are leased while a POST
is in flight, so two dispatchers on one state directory never send the same row at
the same time, and a row whose dispatcher died mid-POST is retried once the lease ends.

A receiver is identified by its name *and* URL: an event delivered to a receiver's old
URL is not "sent" for its new one. Schema history: v1 had a table `outbox` keyed by
(receiver, event_id); v2 is the table `deliveries` keyed by (receiver, url, event_id).
A v1 file is migrated on open by `adopt_legacy`, which gives its rows the URL each
receiver has now (the best guess there is) and then drops the old table.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flows.private import private_file

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    receiver TEXT NOT NULL,
    url TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    UNIQUE (receiver, url, event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (receiver, url, state, id);
"""
_COLUMNS = "event_id, body, state, attempts, next_attempt_at, lease_until, created_at, updated_at"


@dataclass(frozen=True)
class Row:
    """A pending delivery, as handed to the dispatcher."""

    id: int
    receiver: str
    url: str
    event_id: str
    body: bytes
    attempts: int  # including the attempt this row was just claimed for


class Outbox:
    """The outbox table in `path` (WAL mode), safe to share between threads.

    The file holds signed bodies, so it is a `private_file`.
    """

    def __init__(self, path: Path) -> None:
        private_file(path)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a delivered mark must survive a crash
        self._db.executescript(_SCHEMA)

    def adopt_legacy(self, urls: dict[str, str]) -> int:
        """Move a v1 file's rows (keyed by name only) into `deliveries`; returns rows moved.

        Each row of a receiver named in `urls` gets that receiver's current URL; rows of
        receivers no longer configured are dropped with the old table.
        """
        with self._lock:
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
            ).fetchone()
            if not exists:
                return 0
            moved = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for name, url in urls.items():
                    moved += self._db.execute(
                        f"INSERT INTO deliveries (receiver, url, {_COLUMNS})"
                        f" SELECT receiver, ?, {_COLUMNS} FROM outbox WHERE receiver = ?"
                        " ORDER BY id ON CONFLICT (receiver, url, event_id) DO NOTHING",
                        (url, name),
                    ).rowcount
                self._db.execute("DROP TABLE outbox")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return moved

    def add(self, receiver: str, url: str, event_id: str, body: bytes) -> bool:
        """Queue one delivery; False if this receiver (name and URL) already has this event."""
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO deliveries"
                " (receiver, url, event_id, body, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (receiver, url, event_id) DO NOTHING",
                (receiver, url, event_id, body, now, now, now),
            )
        return cursor.rowcount == 1

    def retarget(self, receiver: str, url: str) -> int:
        """Point the receiver's pending rows for other URLs at `url`; returns rows moved.

        A receiver whose URL changed gets what its old URL never confirmed; a row the new
        URL already has is dropped. Delivered and failed rows keep their old URL, so an
        event sent to the old URL is queued again, once, for the new one.
        """
        with self._lock:
            moved = self._db.execute(
                "UPDATE OR IGNORE deliveries SET url = ?, next_attempt_at = ?, lease_until = 0"
                " WHERE receiver = ? AND url != ? AND state = 'pending'",
                (url, time.time(), receiver, url),
            ).rowcount
            self._db.execute(
                "DELETE FROM deliveries WHERE receiver = ? AND url != ? AND state = 'pending'",
                (receiver, url),
            )
        return moved

    def retry_now(self, receiver: str, url: str) -> None:
        """Make every pending row of the receiver due: a restart is the moment to try again."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending'"
                " AND receiver = ? AND url = ?",
                (time.time(), receiver, url),
            )

    def claim(self, receiver: str, url: str, lease_seconds: float) -> Row | float | None:
        """Lease the receiver's oldest pending row if it is due.

        Rows of one receiver go out in order, so a "resolved" never overtakes its
        "firing". Returns the row, None when nothing is pending, or the time at which
        the oldest row becomes due.
        """
        now = time.time()
        with self._lock:
            head = self._db.execute(
                "SELECT id, event_id, body, attempts, max(next_attempt_at, lease_until)"
                " FROM deliveries WHERE receiver = ? AND url = ? AND state = 'pending'"
                " ORDER BY id LIMIT 1",
                (receiver, url),
            ).fetchone()
            if head is None:
                return None
            row_id, event_id, body, attempts, due = head
            if due > now:
                return float(due)
            claimed = self._db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, lease_until = ?, updated_at = ?"
                " WHERE id = ? AND state = 'pending' AND lease_until <= ?",
                (now + lease_seconds, now, row_id, now),
            ).rowcount
        if not claimed:
            return now
        return Row(row_id, receiver, url, event_id, bytes(body), attempts + 1)

    def delivered(self, row: Row) -> None:
        self._finish(row, DELIVERED, None)

    def failed(self, row: Row, error: str) -> None:
        """Give up on a row for good."""
        self._finish(row, FAILED, error)

    def retry_at(self, row: Row, when: float, error: str) -> None:
        """Release the lease and schedule the next attempt."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET next_attempt_at = ?, lease_until = 0, updated_at = ?,"
                " last_error = ? WHERE id = ?",
                (when, time.time(), error, row.id),
            )

    def depth(self, receivers: Iterable[tuple[str, str]]) -> dict[str, int]:
        """Pending rows per (name, url) receiver, by name (zero for receivers with none)."""
        depth: dict[str, int] = {}
        with self._lock:
            for name, url in receivers:
                depth[name] = self._db.execute(
                    "SELECT count(*) FROM deliveries WHERE state = 'pending'"
                    " AND receiver = ? AND url = ?",
                    (name, url),
                ).fetchone()[0]
        return depth

    def states(self) -> list[tuple[str, str, str, int]]:
        """(receiver, event_id, state, attempts) of every row, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT receiver, event_id, state, attempts FROM deliveries ORDER BY id"
            ).fetchall()

    def urls(self) -> list[tuple[str, str, str, str]]:
        """(receiver, url, event_id, state) of every row, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT receiver, url, event_id, state FROM deliveries ORDER BY id"
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _finish(self, row: Row, state: str, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = ?, lease_until = 0, updated_at = ?, last_error = ?"
                " WHERE id = ?",
                (state, time.time(), error, row.id),
            )

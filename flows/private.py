"""Directories and files for the job's user alone: recovery snapshots (pickles, which a
resume runs), the webhook outbox (signed bodies) and the Kafka sent-ids."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(directory: Path) -> None:
    """Create `directory` (and its parents) 0700, or tighten it to 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        directory.chmod(0o700)


def private_file(path: Path) -> None:
    """Create `path` empty 0600, or tighten it to 0600, in a `private_dir`; SQLite gives
    a database's -wal and -shm files the database file's mode."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)

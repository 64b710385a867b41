"""Recovery: what its directories let others see."""

from __future__ import annotations

from pathlib import Path

from flows.sinks.kafka import SentLog
from flows.wiring import prepare_recovery


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_snapshots_and_sent_ids_are_for_the_jobs_user_alone(tmp_path: Path) -> None:
    recovery, state = tmp_path / "recovery", tmp_path / "state"
    prepare_recovery(recovery, 2)
    assert mode(recovery) == 0o700
    parts = sorted(recovery.glob("part-*"))
    assert len(parts) == 2 and {mode(part) for part in parts} == {0o600}
    # A directory left by an older version, readable by all, is tightened on start.
    recovery.chmod(0o755)
    parts[0].chmod(0o644)
    prepare_recovery(recovery, 2)
    assert mode(recovery) == 0o700 and mode(parts[0]) == 0o600
    SentLog(state, "kafka:alerts").close()
    assert mode(state) == 0o700 and mode(state / SentLog.FILE) == 0o600

"""Recovery of a file backfill: what its directories let others see, and how much work a
kill costs (the resumed run scores again only what came after the last snapshot)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.sinks.kafka import SentLog
from flows.sources.demo import MarketDay, generate
from flows.wiring import prepare_recovery
from tests.brokers import free_port
from tests.helpers import ROOT


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


def run_args(directory: Path, day: Path) -> list[str]:
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({"window": {"length_seconds": 600}}))
    return [
        *("run", "--config", str(config), "--input", str(day), "--quiet"),
        *("--windows-out", str(directory / "windows.jsonl")),
        *("--alerts-out", str(directory / "alerts.jsonl")),
    ]


def finsentry(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def scored(summary: str) -> int:
    """Items scored, from the summary line `done in ...: N read, M scored ...`."""
    found = re.search(r"read, ([\d,]+) scored", summary)
    assert found, summary[-2000:]
    return int(found.group(1).replace(",", ""))


def finished(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def scored_so_far(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return 0.0  # not serving yet
    found = re.search(rb"^finsentry_messages_scored_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def outcome(directory: Path) -> tuple[list[Any], list[Any]]:
    """Windows by key and time, and alerts, without evidence (its scores' last digits
    may differ with how a batch was composed)."""

    def plain(record: Any) -> Any:
        if isinstance(record, dict):
            return {k: plain(v) for k, v in record.items() if k != "evidence"}
        return record

    windows, alerts = (
        [plain(json.loads(line)) for line in (directory / name).read_text().splitlines()]
        for name in ("windows.jsonl", "alerts.jsonl")
    )
    return sorted(windows, key=lambda w: (w["topic"], w["start"])), alerts


@pytest.mark.slow  # three backfills with the default model
def test_a_killed_backfill_resumes_without_scoring_everything_again(tmp_path: Path) -> None:
    day = tmp_path / "day.jsonl"
    day.write_bytes(b"\n".join(generate(MarketDay(date(2024, 3, 14), minutes=240))) + b"\n")
    (tmp_path / "fresh").mkdir()
    total = scored(finished(finsentry(*run_args(tmp_path / "fresh", day))))
    expected = outcome(tmp_path / "fresh")
    assert {a["status"] for a in expected[1]} == {"firing", "resolved"}  # a surge alerts

    port = free_port()
    args = [
        *run_args(tmp_path, day),
        *("--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "1"),
    ]
    crashed = finsentry(*args, "--metrics-port", str(port))
    deadline = time.monotonic() + 300
    while (at_kill := scored_so_far(port)) < total * 3 / 4:
        assert crashed.poll() is None, "ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(30)
    windows = tmp_path / "windows.jsonl"
    windows_at_kill = windows.read_text().count("\n") if windows.exists() else 0
    # Windows came out as event time advanced, not only at the end of the input.
    assert 0 < windows_at_kill < len(expected[0])

    again = scored(finished(finsentry(*args))) + at_kill - total
    assert outcome(tmp_path) == expected
    # About a snapshot interval's work. Before the one ordering point, all that was scored
    # before the kill (the input was read at once, and all of it scored in one call in
    # which no epoch ended, so no snapshot was taken).
    assert 0 <= again < total / 3, f"{again:.0f} of {total} scored again"

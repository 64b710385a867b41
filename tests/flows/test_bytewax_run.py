"""`python -m bytewax.run flows.monitor:flow`, configured by FINSENTRY_CONFIG alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from flows.sources.demo import MarketDay, generate
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # a whole job in a subprocess


def test_bytewax_run_reads_the_config_named_by_finsentry_config(tmp_path: Path) -> None:
    events = tmp_path / "day.jsonl"
    events.write_bytes(
        b"".join(line + b"\n" for line in generate(MarketDay(date(2024, 3, 14), 60)))
    )
    windows = tmp_path / "windows.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"kind": "file", "path": str(events)},
                "processors": [{"name": "noop", "kind": "noop"}],
                "sinks": {"windows_path": str(windows), "console": False},
            }
        )
    )
    env = {
        **os.environ,
        "FINSENTRY_CONFIG": str(config),
        "FINSENTRY_TORCH": "torch==2.13.0",  # setup.sh's, not a setting
        "FINSENTRY_WEBHOOK_SECRET": "s3cret",  # a receiver's, not a setting
    }
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.monitor:flow"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    closed = [json.loads(line) for line in windows.read_text().splitlines()]
    assert {w["topic"] for w in closed} == {"unclassified", "all"}
    # About 1,450 generated items, of which repeats within the hour are dropped.
    assert sum(w["n"] for w in closed if w["topic"] == "all") > 500

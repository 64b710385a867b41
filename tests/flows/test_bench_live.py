"""`finsentry bench --live`: a short live run gives every figure, and sane ones.

Nothing here is timed against a target: the figures only have to be there, positive,
ordered, and come from alerts that were received.
"""

from __future__ import annotations

import json

import pytest

from flows.bench import LivePlan, LiveRequest
from flows.brokers import installed
from tests.flows.test_cli import finsentry


@pytest.mark.slow  # a broker, a job and a live stream: about 50 s
@pytest.mark.skipif(installed() is None, reason="no local broker (pip install noida-db)")
def test_live_bench_measures_scored_messages_and_alerts() -> None:
    done = finsentry(
        *("bench", "--live", "--chain", "noop", "--seconds", "20", "--rate", "100"),
        *("--window-seconds", "1"),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    figures = json.loads(done.stdout)
    scored, alerts = figures["scored"], figures["alerts"]
    # Every item sent in the measured stream came out scored.
    assert scored["n"] == figures["sent"]["items"] > 1500
    assert 0 < scored["p50_s"] <= scored["p99_s"] <= scored["max_s"]
    # The market-wide volume spike fired on a burst, and reached the receiver.
    assert alerts["n"] >= 1
    assert any(event.startswith("NewsVolumeSpike firing") for event in alerts["events"])
    assert 0 < alerts["p50_s"] <= alerts["p99_s"] <= alerts["max_s"]
    assert figures["rate_from"] == "--rate" and figures["processors"] == ["noop"]
    assert figures["order"]["source.max_delay_seconds"] == 5
    table = done.stderr.decode()
    assert "ingest -> scored" in table and "deadline -> alert received" in table


def test_bursts_fall_in_whole_windows_after_the_warm_up() -> None:
    request = LiveRequest(seconds=10, window_seconds=1, burst_every=3)
    plan = LivePlan(request, rate=10, burst=2, first_burst=2, min_burst_items=0)
    schedule = plan.schedule(align=0.0, start=100.0)
    calm = [at for at, burst in schedule if not burst]
    bursts = [at for at, burst in schedule if burst]
    assert len(calm) == 100 and calm == sorted(calm)
    # Windows 102, 105 and 108, each with its 20 extra items spread across it.
    assert sorted({int(at) for at in bursts}) == [102, 105, 108]
    assert len(bursts) == 3 * 20 == 3 * plan.burst_items

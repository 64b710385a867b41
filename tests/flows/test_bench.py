"""`finsentry bench`: its figures must measure what they say they measure."""

from __future__ import annotations

import json

import pytest

from flows.bench import bench_processors, headlines, messages_from
from flows.config import Config
from processors.models.encoder import SentenceEncoder
from tests.flows.test_cli import finsentry

pytestmark = pytest.mark.slow  # the benchmark with the real models


def test_the_processors_encode_every_measured_message(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    encode = SentenceEncoder.encode

    def counting(self: SentenceEncoder, texts: list[str]):  # type: ignore[no-untyped-def]
        encoded.extend(texts)
        return encode(self, texts)

    monkeypatch.setattr(SentenceEncoder, "encode", counting)
    messages = messages_from(headlines(40))
    measure = bench_processors(Config(), messages, batch_size=16)
    # The warm-up's texts are others: no measured batch is served from the latest pass.
    measured = encoded[-len(messages) :]
    assert measured == [m.body.text for m in messages]
    assert len(encoded) == 16 + len(messages)
    assert measure.messages == 40 and len(measure.batch_seconds) == 3


def test_bench_prints_every_figure() -> None:
    done = finsentry(
        "bench", "-n", "32", "--naive", "4", "--flow", "64", "--overhead", "2000", "--repeat", "2"
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    figures = json.loads(done.stdout)
    for measure in ("naive", "processors", "flow", "flow_plain", "flow_noop"):
        assert figures[measure]["msgs_per_s"] > 0
    assert figures["flow"]["scored"] <= figures["flow"]["messages"] == 64
    assert figures["flow_plain"]["messages"] == 64 and -1 < figures["entities_stories_cost"] < 1
    assert figures["flow_noop"]["messages"] == 2000
    assert len(figures["flow_noop"]["runs_msgs_per_s"]) == 2
    assert figures["processors"]["batch_p99_s"] >= figures["processors"]["batch_p50_s"]
    assert figures["dtype"] in ("float32", "bfloat16", "float16")
    assert "no-op flow runs" in done.stderr.decode()
    assert "entities and story finding take" in done.stderr.decode()

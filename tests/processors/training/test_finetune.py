"""Fine-tuning the default encoder: a tiny, time-bounded run that config can then name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from flows.config import load_config
from flows.models import build_chain
from processors.models.heads import ClassifierHeads
from processors.training.train import find_data_dir
from tests.helpers import message

pytestmark = pytest.mark.slow

TEXTS = [
    "$AAPL beats on earnings, raises guidance",
    "Oil slides as OPEC+ weighs output hike",
    "Goldman downgrades $TSLA to sell",
    "CEO steps down effective immediately",
]


def test_a_tiny_fine_tune_stops_on_time_and_serves_through_the_config(tmp_path: Path) -> None:
    from processors.training.finetune import fine_tune

    out = tmp_path / "tuned"
    max_minutes = 0.3
    # Far more epochs than 18 seconds allow: the wall-clock budget must end training.
    figures = fine_tune(
        find_data_dir(), out, epochs=100, max_minutes=max_minutes, batch_size=16, limit=64
    )
    training = figures["training"]
    assert 1 <= training["steps"] < 100 * 2 * math.ceil(64 / 16)
    assert training["train_seconds"] <= max_minutes * 60 + 15  # one step may overrun
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "heads.safetensors",
    }
    for task in ("topic", "sentiment"):
        assert figures[task]["valid"]["n"] == 64
        assert 0.0 <= figures[task]["valid"]["accuracy"] <= 1.0
    assert ClassifierHeads.load(out / "heads.safetensors").figures == figures

    config_file = tmp_path / "config.yaml"
    model = {"model": "default", "encoder": str(out)}  # heads: beside the encoder
    config_file.write_text(
        yaml.safe_dump(
            {
                "processors": [
                    {"name": "topic", "task": "topic", "models": [model]},
                    {"name": "sentiment", "task": "sentiment", "models": [model]},
                ]
            }
        )
    )
    chain = build_chain(load_config(config_file, env={}))
    encoders = {id(m.model) for p in chain.processors for m in p.members}
    assert len(encoders) == 1  # one fine-tuned model serves both tasks
    result = chain.process([message(t, id=str(i)) for i, t in enumerate(TEXTS)])
    assert len(result.scored) == len(TEXTS) and not result.dead_letters
    for scored in result.scored:
        assert [r.task for r in scored.trailer] == ["topic", "sentiment"]
        for r in scored.trailer:
            assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-3)
            assert r.label == max(r.scores, key=r.scores.__getitem__)

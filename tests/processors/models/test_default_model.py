"""The default offline model: the packaged MiniLM with the committed deltas, and its heads."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from processors.envelope.labels import LABELS
from processors.models.encoder import SentenceEncoder
from processors.models.heads import DEFAULT_HEADS_PATH, ClassifierHeads
from processors.training.train import evaluate, load_csv, macro_f1
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

DATA_DIR = ROOT.parent / "shared/data/twitter-financial-news"

# Full valid-set accuracy of the default model: topic 0.885, sentiment 0.875 (0.843 and
# 0.830 for the frozen-encoder heads these floors were set on). The CSVs are grouped by
# label, so their first 300 rows are a harder, skewed slice (measured then: topic 0.793,
# sentiment 0.777); the floors sit a few points under that.
FLOORS = {"topic": 0.76, "sentiment": 0.74}

TEXTS = [
    "$AAPL beats on earnings, raises guidance",
    "Fed holds rates steady, signals two cuts later this year https://t.co/abc123",
    "Oil slides as OPEC+ weighs output hike",
    "Goldman downgrades $TSLA to sell",
    "ok",
    "Treasury yields jump after hot CPI print; 10-year tops 4.5% as traders pare bets on "
    "an early easing cycle, while the dollar firms against the yen and euro",
    "Acme Corp to acquire Widget Inc for $2.1 billion in cash",
    "",
    "CEO steps down effective immediately",
    "Stocks rally into the close",
]


@pytest.fixture(scope="module")
def heads() -> ClassifierHeads:
    return ClassifierHeads.load()


@pytest.fixture(scope="module")
def encoder(heads: ClassifierHeads) -> SentenceEncoder:
    return SentenceEncoder(batch_size=64, max_tokens=heads.max_tokens, deltas=heads.encoder_deltas)


def test_encoder_shape_order_and_batch_invariance(encoder: SentenceEncoder) -> None:
    feats = encoder.encode(TEXTS)
    assert feats.shape == (len(TEXTS), encoder.dim)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.isfinite(feats).all()

    perm = list(range(len(TEXTS)))
    random.Random(0).shuffle(perm)
    shuffled = encoder.encode([TEXTS[i] for i in perm])
    unshuffled = torch.empty_like(shuffled)
    unshuffled[torch.tensor(perm)] = shuffled
    torch.testing.assert_close(unshuffled, feats, atol=1e-5, rtol=0)

    for k in (0, 5, 7):
        torch.testing.assert_close(encoder.encode([TEXTS[k]])[0], feats[k], atol=1e-5, rtol=0)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_committed_heads_predict_probabilities(
    encoder: SentenceEncoder, heads: ClassifierHeads
) -> None:
    assert DEFAULT_HEADS_PATH.stat().st_size < 10 * 1024 * 1024  # small enough for git
    assert heads.encoder_deltas and heads.base_sha256
    assert (heads.pooling, heads.dim) == (encoder.pooling, encoder.dim)
    assert encoder.model_id == f"{heads.model_id}+adapted"
    probs = heads.predict(encoder.encode(TEXTS))
    assert set(probs) == {"topic", "sentiment"}
    for task, p in probs.items():
        assert p.shape == (len(TEXTS), len(LABELS[task]))
        torch.testing.assert_close(p.sum(-1), torch.ones(len(TEXTS)))
    top = dict(zip(TEXTS, probs["topic"].argmax(-1).tolist(), strict=True))
    assert LABELS["topic"][top["Oil slides as OPEC+ weighs output hike"]] == "energy_oil"


def test_save_load_roundtrip_is_exact(heads: ClassifierHeads, tmp_path: Path) -> None:
    path = tmp_path / "heads.safetensors"
    heads.save(path)
    again = ClassifierHeads.load(path)
    assert again.metadata() == heads.metadata()
    ref, got = heads.state_dict(), again.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    x = torch.randn(8, heads.dim, generator=torch.Generator().manual_seed(0))
    for task, p in heads.predict(x).items():
        assert torch.equal(p, again.predict(x)[task])


def test_macro_f1_matches_hand_count() -> None:
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0])
    # F1 per class: 0 -> 2/4, 1 -> 4/5, 2 -> 0 (missed), mean over the three.
    assert macro_f1(y, p) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"labelled data not found at {DATA_DIR}")
@pytest.mark.parametrize("task", ["topic", "sentiment"])
def test_valid_accuracy_floor(task: str, encoder: SentenceEncoder) -> None:
    csv_path = DATA_DIR / f"{task}_valid.csv"
    _, names = load_csv(csv_path)
    assert set(names) <= set(LABELS[task])
    result = evaluate(task, csv_path, encoder=encoder, limit=300, cache_dir=None)
    assert result["task"] == task and result["n"] == 300
    assert result["accuracy"] >= FLOORS[task], result

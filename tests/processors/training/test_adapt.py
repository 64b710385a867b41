"""The default model's recipe: top layers fine-tuned, fp16 deltas, fitted temperatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flows.config import InferenceConfig, ModelConfig
from flows.models import build_default_model
from processors.models.heads import ADAPTED_FORMAT, ClassifierHeads
from processors.training.adapt import fit_temperature
from processors.training.train import (
    NEWS_SPLIT_SEED,
    NEWS_VALID_FRAC,
    find_data_dir,
    load_labelled,
    news_dir,
    news_split,
    stratified_split,
)

TEXTS = [
    "$AAPL beats on earnings, raises guidance",
    "Oil slides as OPEC+ weighs output hike",
    "Goldman downgrades $TSLA to sell",
]


@pytest.mark.slow
def test_a_tiny_run_writes_deltas_of_the_trained_layer_only_and_serves(tmp_path: Path) -> None:
    from safetensors import safe_open

    from processors.training.adapt import train_adapted

    out = tmp_path / "adapted.safetensors"
    figures = train_adapted(
        find_data_dir(), out, trained_layers=1, epochs=0.5, batch_size=16, limit=48, threads=None
    )
    assert figures["training"]["steps"] >= 1
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["format"] == ADAPTED_FORMAT

    heads = ClassifierHeads.load(out)
    assert heads.figures == figures
    assert heads.max_tokens == 64 and heads.pooling == "mean+max"
    assert set(heads.temperatures) == {"topic", "sentiment"}
    assert all(t > 0 for t in heads.temperatures.values())
    layers = {name.split(".")[2] for name in heads.encoder_deltas}
    assert layers == {"5"}  # one layer trained: the top one, and nothing else
    assert all(d.dtype == torch.float16 for d in heads.encoder_deltas.values())
    assert any(d.abs().max() > 0 for d in heads.encoder_deltas.values())

    model = build_default_model(ModelConfig(heads=out), InferenceConfig(max_tokens=64))
    for task, classes in (("topic", 20), ("sentiment", 3)):
        probs = model.predict(task, TEXTS)
        assert probs.shape == (len(TEXTS), classes)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


def test_the_news_split_is_stratified_seeded_and_disjoint() -> None:
    data = find_data_dir()
    _, y = load_labelled(news_dir(data) / "finentity.csv", "sentiment")
    keep, held = stratified_split(y, NEWS_VALID_FRAC, NEWS_SPLIT_SEED)
    assert np.intersect1d(keep, held).size == 0
    assert np.union1d(keep, held).tolist() == list(range(len(y)))
    for c in np.unique(y):  # every class holds out its share
        assert (y[held] == c).sum() == round(NEWS_VALID_FRAC * (y == c).sum())
    again = stratified_split(y, NEWS_VALID_FRAC, NEWS_SPLIT_SEED)
    assert np.array_equal(held, again[1])
    assert not np.array_equal(held, stratified_split(y, NEWS_VALID_FRAC, 1)[1])

    split = news_split(data, "finentity")
    assert len(split["valid"][0]) == len(held) and len(split["train"][0]) == len(keep)
    assert np.array_equal(split["valid"][1], y[held])


def test_the_fitted_temperature_lowers_the_nll_of_overconfident_logits() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (400,), generator=g)
    clean = torch.nn.functional.one_hot(y, 3).float() * 2.0 + torch.randn(400, 3, generator=g)
    logits = clean * 6.0  # same ranking, far too sharp
    t = fit_temperature(logits, y)
    assert t > 1.5
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / t, y) < nll(logits, y) - 0.1
    assert nll(logits / t, y) <= min(nll(logits / s, y) for s in (t * 0.8, t * 1.25)) + 1e-4

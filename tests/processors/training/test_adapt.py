"""The default model's recipe: top layers fine-tuned, int8 deltas, fitted temperatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flows.config import InferenceConfig, ModelConfig
from flows.models import build_default_model
from processors.models.encoder import SCALE_SUFFIX, dequantize_deltas
from processors.models.heads import ADAPTED_FORMAT, ClassifierHeads
from processors.training.adapt import fit_temperature, quantize_deltas
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
    for name, d in heads.encoder_deltas.items():  # matrices int8 with a scale, vectors fp16
        if name.endswith(SCALE_SUFFIX):
            assert (
                d.dtype == torch.float32
                and heads.encoder_deltas[name[: -len(SCALE_SUFFIX)]].dim() == 2
            )
        else:
            assert d.dtype == (torch.int8 if d.dim() == 2 else torch.float16), name
    assert any(d.abs().max() > 0 for d in dequantize_deltas(heads.encoder_deltas).values())

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


def test_int8_deltas_round_trip_within_half_a_step_of_each_row() -> None:
    g = torch.Generator().manual_seed(0)
    deltas = {"w": torch.randn(6, 5, generator=g) * 1e-3, "b": torch.randn(5, generator=g)}
    deltas["w"][2] = 0.0  # an untouched row stays exactly zero
    stored = quantize_deltas(deltas)
    assert stored["w"].dtype == torch.int8 and stored["b"].dtype == torch.float16
    back = dequantize_deltas(stored)
    assert set(back) == {"w", "b"}
    step = deltas["w"].abs().amax(1, keepdim=True) / 127
    assert ((back["w"] - deltas["w"]).abs() <= step / 2 + 1e-9).all()
    assert torch.equal(back["w"][2], torch.zeros(5))
    torch.testing.assert_close(back["b"], deltas["b"], atol=1e-3, rtol=1e-3)

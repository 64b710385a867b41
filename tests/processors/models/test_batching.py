"""The shared micro-batch runner: token budgets, order, dtypes and out-of-memory splits."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from processors.chain.chain import Chain
from processors.chain.classify import ClassifyProcessor, Member
from processors.models.batching import CPU_BATCH_TOKENS, MicroBatchRunner, token_budget_batches
from processors.models.encoder import pick_dtype
from processors.models.huggingface import HuggingFaceModel
from tests.helpers import message
from tests.tiny_models import save_tiny_classifier

LABELS = ["negative", "neutral", "positive"]
WORDS = ("oil", "slumps", "fed", "holds", "rates", "record", "profits", "yields", "jump")


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny"), LABELS)


def model(path: Path, **options: object) -> HuggingFaceModel:
    return HuggingFaceModel(str(path), "sentiment", device="cpu", **options)


def recording(runner: MicroBatchRunner) -> list[tuple[int, int]]:
    """Wrap the runner's forward to record each call's (rows, padded width)."""
    calls: list[tuple[int, int]] = []
    forward = runner.forward

    def record(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(tuple(inputs["input_ids"].shape))
        return forward(inputs)

    runner.forward = record
    return calls


@pytest.mark.parametrize("cap", [None, 3])
def test_token_budget_batches_cover_every_index_once_within_budget(cap: int | None) -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 60) for _ in range(500)] + [200]
    batches = token_budget_batches(lengths, 256, cap)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # shortest first
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 256
        assert cap is None or len(b) <= cap
    assert [200] in [[lengths[i] for i in b] for b in batches]  # too long: alone, not lost


def test_budgeted_batches_pad_to_their_own_longest_and_keep_input_order(path: Path) -> None:
    small, large = model(path, max_batch_tokens=100), model(path, max_batch_tokens=100_000)
    calls = recording(small.runner)
    batch = texts(40)
    got = small.predict("sentiment", batch)
    assert len(calls) > 1 and all(rows == 1 or rows * width <= 100 for rows, width in calls)
    np.testing.assert_allclose(got, large.predict("sentiment", batch), atol=1e-5)
    shuffled = list(range(len(batch)))
    random.Random(2).shuffle(shuffled)
    again = small.predict("sentiment", [batch[i] for i in shuffled])
    np.testing.assert_allclose(again, got[shuffled], atol=1e-5)
    for i in (0, 7):
        np.testing.assert_allclose(small.predict("sentiment", [batch[i]])[0], got[i], atol=1e-5)
    assert small.predict("sentiment", []).shape == (0, len(LABELS))


def test_out_of_memory_splits_the_micro_batch_until_it_fits(path: Path) -> None:
    capped, free = model(path, max_batch_tokens=100_000), model(path, max_batch_tokens=100_000)
    capped.runner._oom_cap = 120  # padded tokens a "device" can hold at once
    calls = recording(capped.runner)
    batch = texts(60)
    got = capped.predict("sentiment", batch)
    np.testing.assert_allclose(got, free.predict("sentiment", batch), atol=1e-5)
    assert capped.runner.splits > 0
    assert all(rows * width <= 120 for rows, width in calls)
    assert sum(rows for rows, _ in calls) == len(batch)
    # The budget shrank below what failed, so the next batch does not fail again.
    splits = capped.runner.splits
    np.testing.assert_allclose(capped.predict("sentiment", batch), got, atol=1e-5)
    assert capped.runner.splits == splits


def test_a_text_too_big_even_alone_becomes_a_dead_letter_not_a_loss(path: Path) -> None:
    tiny = model(path)
    tiny.runner._oom_cap = 30
    with pytest.raises(torch.cuda.OutOfMemoryError):
        tiny.predict("sentiment", ["word " * 40])
    chain = Chain([ClassifyProcessor("sentiment", "sentiment", [Member(tiny)])])
    short = ["oil slumps", "fed holds rates", "record profits", "yields jump", "cpi print"]
    batch = [message(t, str(i)) for i, t in enumerate([*short, "word " * 40, *short])]
    out = chain.process(batch)
    [letter] = out.dead_letters
    assert letter.position == "5" and "OutOfMemoryError" in letter.detail
    assert len(out.scored) == len(batch) - 1


def test_dtype_auto_is_float32_on_cpu_and_bfloat16_runs_close(path: Path) -> None:
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("float16", torch.device("cpu")) == torch.float16
    batch = texts(20)
    full = model(path).predict("sentiment", batch)
    half = model(path, dtype="bfloat16").predict("sentiment", batch)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(half, full, atol=0.05)
    assert not np.array_equal(half, full)  # it did run in bfloat16


def test_default_budget_applies_when_none_is_configured(path: Path) -> None:
    assert model(path).runner.max_batch_tokens == CPU_BATCH_TOKENS

"""Hugging Face classifiers, zero-shot NLI and ensembles, loaded for real from config.

The models are tiny and untrained, built and saved here, then loaded through the same
path a user's hub id or directory takes: YAML config -> `build_chain` ->
`from_pretrained`. Expected probabilities come from running each saved model the
plain way, one input at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flows.config import ConfigError, load_config
from flows.models import build_chain
from processors.chain.chain import Chain
from processors.envelope.labels import SENTIMENTS, TOPICS
from processors.envelope.message import Result
from processors.models import ModelLoadError
from processors.models.zeroshot import ZeroShotModel
from tests.helpers import message
from tests.tiny_models import NLI_LABELS, reference_logits, save_tiny_classifier

TEXTS = [
    "Oil slumps as OPEC+ weighs an output hike",
    "Fed holds rates steady",
    "$AAPL beats on earnings, raises guidance for the full year after record iPhone sales",
    "ok",
    "Treasury yields jump after a hot CPI print; the 10-year tops 4.5% as traders pare bets",
]
SOCIAL_MAP = {"Bearish": "negative", "Bullish": "positive", "Neutral": "neutral"}
TOPIC_WORDS = {
    "energy_oil": "oil and energy",
    "central_banks": "central banks and interest rates",
    "earnings": "company earnings",
    "general_news": "something else",
}


@pytest.fixture(scope="module")
def social(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A social-sentiment model with its own label names, like finbert-tone's."""
    return save_tiny_classifier(tmp_path_factory.mktemp("social"), list(SOCIAL_MAP), seed=0)


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentiment model whose labels are already canonical, in another order."""
    labels = ["positive", "negative", "neutral"]
    return save_tiny_classifier(tmp_path_factory.mktemp("news"), labels, seed=1)


@pytest.fixture(scope="module")
def nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("nli"), NLI_LABELS, seed=2)


def chain_from(tmp_path: Path, *processors: dict[str, Any], **inference: Any) -> Chain:
    """The chain a YAML config file with these processors builds."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"processors": list(processors), "inference": inference}))
    return build_chain(load_config(path, env={}))


def score(chain: Chain, texts: list[str], task: str) -> list[Result]:
    out = chain.process([message(t, str(i)) for i, t in enumerate(texts)])
    assert not out.dead_letters
    return [m.result(task) for m in out.scored]


def test_a_local_classifier_runs_through_config_with_its_labels_mapped(
    social: Path, tmp_path: Path
) -> None:
    spec = {"model": str(social), "label_map": SOCIAL_MAP}
    chain = chain_from(tmp_path, {"name": "social", "task": "sentiment", "models": [spec]})
    results = score(chain, TEXTS, "sentiment")
    # The model's columns are Bearish, Bullish, Neutral.
    expected = reference_logits(social, TEXTS).softmax(-1).numpy()
    for result, (bearish, bullish, neutral) in zip(results, expected, strict=True):
        assert result.model == str(social) and result.processor == "social"
        assert list(result.scores) == list(SENTIMENTS)
        assert result.scores == pytest.approx(
            {"negative": bearish, "neutral": neutral, "positive": bullish}, abs=1e-4
        )
        assert result.label == max(result.scores, key=result.scores.__getitem__)


def test_canonical_labels_need_no_map(news: Path, tmp_path: Path) -> None:
    chain = chain_from(
        tmp_path, {"name": "news", "task": "sentiment", "models": [{"model": str(news)}]}
    )
    [result] = score(chain, ["Stocks rally into the close"], "sentiment")
    expected = reference_logits(news, ["Stocks rally into the close"])[0].softmax(-1)
    positive, negative, neutral = expected.tolist()
    assert result.scores == pytest.approx(
        {"negative": negative, "neutral": neutral, "positive": positive}, abs=1e-4
    )


@pytest.mark.parametrize(
    ("model", "label_map", "match"),
    [
        ("finsentry-test/no-such-model", None, r"finsentry-test/no-such-model.*hf download"),
        ("{tmp}/missing", None, r"missing': no such directory"),
        ("{social}", {"Bearish": "negative", "Bulish": "positive"}, r"\['Bulish'\].*Bullish"),
        ("{social}", {"Bearish": "bad", "Bullish": "good", "Neutral": "neutral"}, r"'bad'"),
    ],
)
def test_a_model_that_cannot_load_fails_at_start_naming_processor_and_model(
    model: str, label_map: dict[str, str] | None, match: str, social: Path, tmp_path: Path
) -> None:
    model = model.format(tmp=tmp_path, social=social)
    spec = {"model": model, "label_map": label_map}
    with pytest.raises(ModelLoadError, match=rf"^processor 'social': .*{match}") as caught:
        chain_from(tmp_path, {"name": "social", "task": "sentiment", "models": [spec]})
    assert repr(model) in str(caught.value)


@pytest.mark.parametrize("merge", ["weighted_mean", "vote"])
def test_an_ensemble_of_two_models_keeps_each_members_result(
    merge: str, social: Path, news: Path, tmp_path: Path
) -> None:
    members = [
        {"model": str(social), "label_map": SOCIAL_MAP, "weight": 3.0},
        {"model": str(news), "weight": 1.0},
    ]
    chain = chain_from(
        tmp_path, {"name": "sentiment", "task": "sentiment", "merge": merge, "models": members}
    )
    for result in score(chain, TEXTS, "sentiment"):
        a, b = result.members
        assert (a.model, b.model) == (str(social), str(news))
        assert result.model == f"{social}+{news}"
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)
        if merge == "weighted_mean":
            for label in SENTIMENTS:
                mean = 0.75 * a.scores[label] + 0.25 * b.scores[label]
                assert result.scores[label] == pytest.approx(mean, abs=1e-3)
        else:  # the weight-3 member outvotes the other
            assert result.label == a.label


def zero_shot_spec(nli: Path, **options: Any) -> dict[str, Any]:
    return {"model": str(nli), "zero_shot": {"labels": TOPIC_WORDS, **options}}


def expected_zero_shot(nli: Path, texts: list[str], multi_label: bool) -> np.ndarray:
    hypotheses = [f"This text is about {words}." for words in TOPIC_WORDS.values()]
    pairs = [(t, h) for t in texts for h in hypotheses]
    logits = reference_logits(nli, [p for p, _ in pairs], [h for _, h in pairs])
    logits = logits.view(len(texts), len(hypotheses), len(NLI_LABELS))
    entail, contradict = NLI_LABELS.index("entailment"), NLI_LABELS.index("contradiction")
    if multi_label:
        each = logits[..., [contradict, entail]].softmax(-1)[..., 1]
        return (each / each.sum(-1, keepdim=True)).numpy()
    return logits[..., entail].softmax(-1).numpy()


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_scores_the_listed_topics_in_canonical_order(
    multi_label: bool, nli: Path, tmp_path: Path
) -> None:
    spec = zero_shot_spec(nli, multi_label=multi_label)
    chain = chain_from(tmp_path, {"name": "topic", "task": "topic", "models": [spec]})
    results = score(chain, TEXTS, "topic")
    expected = expected_zero_shot(nli, TEXTS, multi_label)
    for result, row in zip(results, expected, strict=True):
        assert list(result.scores) == list(TOPICS)
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)
        listed = {t: result.scores[t] for t in TOPIC_WORDS}
        assert listed == pytest.approx(dict(zip(TOPIC_WORDS, row, strict=True)), abs=1e-4)
        assert all(result.scores[t] == 0.0 for t in TOPICS if t not in TOPIC_WORDS)
        assert result.label in TOPIC_WORDS


def test_zero_shot_is_batched_and_batch_invariant(nli: Path) -> None:
    # A budget of 64 padded tokens forces many micro-batches of (text, label) pairs.
    model = ZeroShotModel(str(nli), "topic", TOPIC_WORDS, device="cpu", max_batch_tokens=64)
    calls: list[int] = []
    forward = model.runner.forward
    model.runner.forward = lambda inputs: calls.append(len(inputs["input_ids"])) or forward(inputs)
    many = model.predict("topic", TEXTS)
    assert many.shape == (len(TEXTS), len(TOPICS)) and many.dtype == np.float32
    assert sum(calls) == len(TEXTS) * len(TOPIC_WORDS) and len(calls) > 1
    np.testing.assert_allclose(many.sum(1), 1.0, atol=1e-6)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(model.predict("topic", [text])[0], many[i], atol=1e-5)


@pytest.mark.parametrize(
    ("zero_shot", "match"),
    [
        ({"labels": {"energy_oil": "oil"}}, "at least two labels"),
        ({"labels": {"oil": "oil", "macro": "the economy"}}, r"\['oil'\] are not topic labels"),
        ({"labels": TOPIC_WORDS, "hypothesis": "About"}, "needs a {}"),
    ],
)
def test_zero_shot_settings_that_cannot_work_fail_at_start(
    zero_shot: dict[str, Any], match: str, nli: Path, tmp_path: Path
) -> None:
    spec = {"model": str(nli), "zero_shot": zero_shot}
    with pytest.raises(ModelLoadError, match=rf"^processor 'topic': .*{match}"):
        chain_from(tmp_path, {"name": "topic", "task": "topic", "models": [spec]})


def test_zero_shot_needs_an_nli_model(social: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"not an NLI model.*'Bearish'"):
        chain_from(tmp_path, {"name": "topic", "task": "topic", "models": [zero_shot_spec(social)]})
    for wrong in ({"model": "default"}, {"model": str(social), "label_map": SOCIAL_MAP}):
        spec = {**zero_shot_spec(social), **wrong}
        with pytest.raises(ConfigError, match="zero_shot needs an NLI model"):
            chain_from(tmp_path, {"name": "topic", "task": "topic", "models": [spec]})


def test_a_model_serves_each_distinct_configuration_once(
    social: Path, nli: Path, tmp_path: Path
) -> None:
    spec = {"model": str(social), "label_map": SOCIAL_MAP}
    chain = chain_from(
        tmp_path,
        {"name": "a", "task": "sentiment", "models": [spec]},
        {"name": "b", "task": "sentiment", "models": [{**spec, "weight": 2.0}]},
        {"name": "c", "task": "topic", "models": [zero_shot_spec(nli)]},
        {"name": "d", "task": "topic", "models": [zero_shot_spec(nli, multi_label=True)]},
    )
    a, b, c, d = (p.members[0].model for p in chain.processors)
    assert a is b  # only the weight differs: one network
    assert c is not d  # different scoring: two models

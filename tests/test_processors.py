"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

import pickle
import random
import re
import string
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pytest

from processors.chain.base import Route
from processors.chain.chain import Chain
from processors.chain.classify import ClassifyProcessor, Member
from processors.chain.merge import vote, weighted_mean
from processors.detection import EwmaDetector
from processors.detection.lifecycle import ALERTNAME, TopicMonitor, fingerprint
from processors.envelope.labels import SENTIMENTS
from processors.envelope.message import to_json
from processors.models import Model
from processors.models.huggingface import label_projection
from processors.stream.dedupe import Deduplicator, id_key, normalised_text, text_key
from processors.stream.window import WindowAccumulator, observe
from tests.helpers import T0, message, window


class Lexicon(Model):
    """A rule model that really reads the text: 'slump' is negative, 'record' positive."""

    tasks = ("sentiment",)

    def __init__(self, model_id: str = "lexicon", explode_on: str | None = None) -> None:
        self.model_id = model_id
        self.explode_on = explode_on
        self.calls: list[int] = []

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            if self.explode_on and self.explode_on in text:
                raise RuntimeError("tokenizer choked")
            if "slump" in text.lower():
                rows.append([0.8, 0.15, 0.05])
            elif "record" in text.lower():
                rows.append([0.05, 0.15, 0.8])
            else:
                rows.append([0.1, 0.8, 0.1])
        return np.array(rows)


def test_classify_appends_one_result_per_message_in_one_model_call() -> None:
    model = Lexicon()
    processor = ClassifyProcessor("sentiment", "sentiment", [Member(model)])
    batch = [message("Oil slumps", "a"), message("Record profits", "b"), message("Fed meets", "c")]
    out = processor.process(batch)
    assert model.calls == [3]
    assert [m.result("sentiment").label for m in out] == ["negative", "positive", "neutral"]
    assert all(m.header.route == ("sentiment",) for m in out)
    assert set(out[0].trailer[0].scores) == set(SENTIMENTS)


def test_route_decides_which_messages_a_processor_takes() -> None:
    processor = ClassifyProcessor(
        "sentiment", "sentiment", [Member(Lexicon())], route=Route(langs=frozenset({"en"}))
    )
    out = processor.process(
        [message("Oil slumps", "a", lang="en"), message("Öl fällt", "b", lang="de")]
    )
    assert out[0].result("sentiment") is not None
    assert out[1].result("sentiment") is None and out[1].header.route == ()


@pytest.mark.parametrize("strategy", ["vote", "weighted_mean"])
def test_ensemble_keeps_each_members_result(strategy: str) -> None:
    members = [Member(Lexicon("a")), Member(Lexicon("b")), Member(Lexicon("c"), weight=2.0)]
    processor = ClassifyProcessor("sentiment", "sentiment", members, merge=strategy)
    [out] = processor.process([message("Oil slumps")])
    result = out.result("sentiment")
    assert result.label == "negative"
    assert result.model == "a+b+c"
    assert [m.model for m in result.members] == ["a", "b", "c"]
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_merge_strategies_disagree_where_they_should() -> None:
    # Two members mildly for label 0, one strongly for label 1.
    mild = np.array([[0.55, 0.45]])
    strong = np.array([[0.01, 0.99]])
    assert vote([mild, mild, strong], [1, 1, 1]).argmax() == 0
    assert weighted_mean([mild, mild, strong], [1, 1, 1]).argmax() == 1
    assert weighted_mean([mild, strong], [10, 1]).argmax() == 0


def test_chain_isolates_the_message_a_processor_cannot_handle() -> None:
    chain = Chain(
        [ClassifyProcessor("sentiment", "sentiment", [Member(Lexicon(explode_on="BOOM"))])]
    )
    out = chain.process([message("Oil slumps", "a"), message("BOOM", "b"), message("Record", "c")])
    assert [m.header.id for m in out.scored] == ["a", "c"]
    assert all(m.header.type == "scored" for m in out.scored)
    [letter] = out.dead_letters
    assert letter.reason == "processor_error" and letter.position == "b"
    assert "tokenizer choked" in letter.detail
    assert out.reports[0].processor == "sentiment"


def test_label_projection_sums_and_rejects_unknown_labels() -> None:
    m = label_projection(
        ["neg", "NEG2", "pos"],
        ["negative", "positive"],
        {"neg": "negative", "neg2": "negative", "pos": "positive"},
    )
    assert (np.array([[0.2, 0.3, 0.5]]) @ m).tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="LABEL_1"):
        label_projection(["LABEL_0", "LABEL_1"], ["negative", "positive"], {"LABEL_0": "negative"})


def test_dedupe_by_id_and_by_normalised_text_within_the_horizon() -> None:
    by_id = Deduplicator(timedelta(hours=1))
    by_text = Deduplicator(timedelta(hours=1))
    a = message("Oil slumps 5%!", "a")
    same_text = message("oil  SLUMPS 5% https://t.co/xyz", "b", at=T0 + timedelta(minutes=10))
    later = message("Oil slumps 5%", "c", at=T0 + timedelta(hours=2))
    assert normalised_text(a.body.text) == normalised_text(same_text.body.text)
    assert by_id.fresh([(T0, id_key(a), a), (T0, id_key(a), a)]) == [a]
    keyed = [(m.header.published_at, text_key(m), m) for m in (a, same_text, later)]
    assert by_text.fresh(keyed) == [a, later]


def test_dedupe_memory_stays_bounded_over_a_long_stream() -> None:
    dedupe = Deduplicator(timedelta(minutes=10))
    for i in range(0, 50_000, 100):
        dedupe.fresh([(T0 + timedelta(seconds=j), b"%d" % j, None) for j in range(i, i + 100)])
    assert len(dedupe.seen) <= 2 * 601 + 1024
    assert pickle.loads(pickle.dumps(dedupe)).seen == dedupe.seen


def _scored(text: str, id: str, sentiment: str, negative: float, topic: str = "energy_oil"):
    from processors.envelope.message import Result

    return message(
        text,
        id,
        trailer=(
            Result("topic", "topic", topic, {topic: 0.9}, "m", 0.0),
            Result("sentiment", "sentiment", sentiment, {"negative": negative}, "m", 0.0),
        ),
    )


def test_window_accumulator_counts_and_keeps_the_most_negative_evidence() -> None:
    left, right = WindowAccumulator(), WindowAccumulator()
    for i in range(8):
        left.add(observe(_scored(f"bad {i}", f"l{i}", "negative", 0.5 + i / 100)))
    right.add(observe(_scored("fine", "r1", "neutral", 0.1)))
    right.add(observe(_scored("great", "r2", "positive", 0.01)))
    right.add(observe(_scored("worst", "r3", "negative", 0.99)))
    w = left.merge(right).close("energy_oil", T0, T0 + timedelta(minutes=5))
    assert (w.n, w.n_negative, w.n_neutral, w.n_positive) == (11, 9, 1, 1)
    assert w.negative_share == pytest.approx(9 / 11)
    assert w.mean_score == pytest.approx((-9 + 1) / 11)
    assert [e.id for e in w.evidence] == ["r3", "l7", "l6", "l5", "l4"]
    assert b'"negative_share"' in to_json(w)


def test_detector_ignores_thin_windows_and_learns_only_from_normal_ones() -> None:
    d = EwmaDetector(min_count=20, warmup_windows=3)
    for i in range(6):
        assert not d.update(window("macro", 40, 5, i), firing=False).abnormal
    assert not d.update(window("macro", 6, 5, 6), firing=False).abnormal  # too few items
    baseline = d.mean
    surge = d.update(window("macro", 60, 45, 7), firing=False)
    assert surge.abnormal and surge.score > 3
    assert d.mean == baseline  # the surge did not become the new normal


def test_no_alert_during_warmup() -> None:
    d = EwmaDetector(warmup_windows=3)
    assert not d.update(window("macro", 60, 50, 0), firing=False).abnormal


def test_lifecycle_fires_once_holds_then_resolves_with_a_stable_fingerprint() -> None:
    monitor = TopicMonitor(EwmaDetector())
    negatives = [4, 5, 4, 4, 30, 36, 33, 20, 4, 5, 30]
    events = [
        (i, e)
        for i, neg in enumerate(negatives)
        for e in monitor.update(window("energy_oil", 40, neg, i))
    ]
    assert [(i, e.status) for i, e in events] == [(4, "firing"), (8, "resolved"), (10, "firing")]
    firing, resolved = events[0][1], events[1][1]
    assert firing.fingerprint == resolved.fingerprint == fingerprint(ALERTNAME, "energy_oil")
    assert firing.labels == {"alertname": ALERTNAME, "topic": "energy_oil", "severity": "critical"}
    assert resolved.starts_at == firing.starts_at and resolved.ends_at > firing.starts_at
    assert firing.event_id != resolved.event_id
    # The Alertmanager shape: camelCase times, "0001-01-01T00:00:00Z" while firing.
    encoded = to_json(firing)
    assert b'"startsAt"' in encoded and b'"endsAt":"0001-01-01T00:00:00Z"' in encoded
    assert b'"generatorURL"' in encoded


def test_normalised_text_is_the_same_on_the_fast_ascii_path() -> None:
    rng = random.Random(0)
    accented = "\u00e9\u00fc\u00c9\u20ac\u2013\u2014\u201c\u201d\u2026\u2019\u00df"
    pieces = [*string.printable, *accented, "https://t.co/Ab1 ", "HTTP://X.Y", "$AAPL", "5%"]
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        words = re.sub(r"[^\w$%]+", " ", re.sub(r"https?://\S+", " ", text).casefold())
        assert normalised_text(text) == words.strip()

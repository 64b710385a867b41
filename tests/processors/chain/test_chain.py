"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from processors.chain.base import Route
from processors.chain.chain import Chain
from processors.chain.classify import ClassifyProcessor, Member
from processors.chain.merge import vote, weighted_mean
from processors.envelope.labels import SENTIMENTS
from processors.models import Model
from tests.helpers import message


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

"""The entity processor's result: every message, the tickers sorted and each once."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from processors.chain import Chain, Route
from processors.entities import TASK, EntityMatcher, EntityProcessor, tickers
from processors.envelope.message import Body, Header, Message, Result
from tests.helpers import message

NOW = datetime(2024, 3, 14, 14, 0, tzinfo=UTC)


def item(text: str, title: str | None = None, feed: tuple[str, ...] = ()) -> Message:
    return Message(Header("m", "item", "wire", NOW, NOW), Body(text, title=title, tickers=feed))


def test_every_message_gets_one_result_with_sorted_unique_tickers(
    matcher: EntityMatcher,
) -> None:
    texts = ["Microsoft and Apple gain; Apple's $AAPL leads", "Fed holds rates steady"]
    out = EntityProcessor(matcher).process([message(t, id=str(i)) for i, t in enumerate(texts)])
    first, second = (m.result(TASK) for m in out)
    scores = {"AAPL": 1.0, "MSFT": 1.0}
    assert first == Result(
        "entities", TASK, "AAPL,MSFT", scores, first.model, first.latency_seconds
    )
    assert first.model.startswith("pytickersymbols-") and first.latency_seconds >= 0
    assert (second.label, second.scores) == ("", {})
    assert [m.header.route for m in out] == [("entities",), ("entities",)]
    assert [tickers(m) for m in out] == [("AAPL", "MSFT"), ()]
    assert tickers(message("Apple")) == ()  # not processed: no result to read


def test_feed_tickers_are_merged_normalised_and_kept_when_unknown(
    matcher: EntityMatcher,
) -> None:
    body = item("Boeing's deliveries rise", feed=("goog", "$BRK-B", "NYSE:ba", "SPY", " "))
    [out] = EntityProcessor(matcher).process([body])
    assert tickers(out) == ("BA", "BRK.B", "GOOGL", "SPY")


def test_the_title_is_matched_on_its_own(matcher: EntityMatcher) -> None:
    # In Title Case "Target" needs a sign; the text's sentence case does not lend one.
    [out] = EntityProcessor(matcher).process(
        [item("the county fair closed with the final round.", title="Archers Hit Their Target")]
    )
    assert tickers(out) == ()
    [out] = EntityProcessor(matcher).process(
        [item("Results came in late.", title="Nvidia Beats Estimates")]
    )
    assert tickers(out) == ("NVDA",)


def test_a_route_passes_other_messages_through(matcher: EntityMatcher) -> None:
    processor = EntityProcessor(matcher, name="names", route=Route(sources=frozenset({"x"})))
    out = processor.process([message("Apple", source="wire"), message("Apple", source="x")])
    assert out[0].trailer == () and out[1].result(TASK).processor == "names"


def test_results_survive_json_and_the_chain(matcher: EntityMatcher) -> None:
    scored = Chain([EntityProcessor(matcher)]).process([message("Boeing and $TSLA")]).scored
    decoded = msgspec.json.decode(msgspec.json.encode(scored[0]), type=Message)
    assert tickers(decoded) == ("BA", "TSLA")

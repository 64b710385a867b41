"""The entity processor: every message gets the tickers of the companies it is about."""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Protocol

from processors.chain.base import Route, RoutedProcessor
from processors.entities.catalog import normal_ticker
from processors.entities.matcher import EntityMatcher
from processors.envelope.message import Body, Message, Result

TASK = "entities"


class MatcherSource(Protocol):
    """Where the matcher of the moment comes from: a watchlist that is reloaded when its
    file changes hands out a new matcher after each change."""

    def matcher(self) -> EntityMatcher: ...


class EntityProcessor(RoutedProcessor):
    """Appends one `entities` result: the feed's own tickers, cashtags and names, merged.

    The result lists the tickers sorted, each once, as the keys of `scores` (each 1.0:
    a mention, not a probability) and joined by commas as its `label` ("" for none);
    `tickers(message)` reads them back. Feed tickers are kept even when the catalog does
    not know them (the feed knows best), written as the catalog writes its own. Given a
    `MatcherSource` instead of a matcher, it asks for the current one once per batch.

    >>> from datetime import datetime, timezone
    >>> from processors.entities.catalog import Entity, EntityCatalog
    >>> from processors.envelope.message import Header
    >>> google = Entity("GOOGL", ("Google",), ("GOOG",))
    >>> catalog = EntityCatalog([Entity("BA", ("Boeing",)), google])
    >>> now = datetime(2024, 1, 2, tzinfo=timezone.utc)
    >>> body = Body("Boeing's deliveries rise", tickers=("goog", "SPY"))
    >>> message = Message(Header("1", "item", "x", now, now), body)
    >>> [out] = EntityProcessor(EntityMatcher(catalog)).process([message])
    >>> out.result("entities").label, tickers(out)
    ('BA,GOOGL,SPY', ('BA', 'GOOGL', 'SPY'))
    """

    def __init__(
        self,
        matcher: EntityMatcher | MatcherSource,
        name: str = TASK,
        route: Route | None = None,
    ) -> None:
        self.name = name
        self.matcher = matcher
        self.route = route or Route()

    def results(self, messages: Sequence[Message]) -> list[Result]:
        started = perf_counter()
        source = self.matcher
        matcher = source if isinstance(source, EntityMatcher) else source.matcher()
        found = [body_tickers(matcher, m.body) for m in messages]
        latency = perf_counter() - started
        model = matcher.catalog.source
        return [
            Result(self.name, TASK, ",".join(t), dict.fromkeys(t, 1.0), model, latency)
            for t in found
        ]


def body_tickers(matcher: EntityMatcher, body: Body) -> tuple[str, ...]:
    """Sorted, each once: the feed's tickers, then what the title and text name."""
    catalog = matcher.catalog
    found = {catalog.canonical(t) or normal_ticker(t) for t in body.tickers}
    found.discard("")
    found |= matcher.find(body.text)
    if body.title:  # matched on its own: a title's capitals follow their own style
        found |= matcher.find(body.title)
    return tuple(sorted(found))


def tickers(message: Message) -> tuple[str, ...]:
    """The tickers the entity processor found in `message`; () if it did not run."""
    result = message.result(TASK)
    return tuple(result.scores) if result else ()

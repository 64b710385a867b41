"""Watched entities added to the catalog: a private company by its aliases, extra names
for a listed one, matched by the catalog's own rules."""

from __future__ import annotations

from processors.entities import (
    EntityCatalog,
    EntityMatcher,
    EntityProcessor,
    tickers,
    watched_catalog,
)
from tests.helpers import message

WATCHED = {"ACMER": ["Acme Robotics", "Acme"], "ba": ["Boeing Commercial Airplanes", "BCA"]}


def test_a_private_company_is_found_by_its_aliases_and_cashtag(catalog: EntityCatalog) -> None:
    matcher = EntityMatcher(watched_catalog(catalog, WATCHED))
    assert matcher.find("Acme Robotics recalls its arms") == {"ACMER"}
    assert matcher.find("Short sellers circle $ACMER after the recall") == {"ACMER"}
    assert matcher.find("Acme's robots stall, Boeing's jets too") == {"ACMER", "BA"}


def test_aliases_follow_the_catalog_rules_for_case_and_word_boundaries(
    catalog: EntityCatalog,
) -> None:
    matcher = EntityMatcher(watched_catalog(catalog, WATCHED))
    assert matcher.find("acme robotics, in lower case, is no name") == set()
    assert matcher.find("Acmeville council meets; an AcmeRobotics fan club") == set()
    assert matcher.find("ACME ROBOTICS SHARES SINK") == {"ACMER"}  # all caps keeps capitals


def test_a_listed_company_gets_the_extra_names_under_its_own_ticker(
    catalog: EntityCatalog,
) -> None:
    merged = watched_catalog(catalog, WATCHED)
    assert merged.entities["BA"].names[: len(catalog.entities["BA"].names)] == (
        catalog.entities["BA"].names
    )
    assert EntityMatcher(merged).find("BCA deliveries slip") == {"BA"}
    assert len(merged) == len(catalog) + 1  # one entity more: the private company
    assert merged.source == f"{catalog.source}+watchlist"


def test_a_share_class_id_adds_to_its_company() -> None:
    base = EntityCatalog([EntityCatalog.builtin().entities["GOOGL"]])
    merged = watched_catalog(base, {"GOOG": ["YouTube"]})
    assert list(merged.entities) == ["GOOGL"]
    assert EntityMatcher(merged).find("YouTube outage") == {"GOOGL"}


class Source:
    """A matcher source whose matcher changes between batches, as a reloaded list's does."""

    def __init__(self, *matchers: EntityMatcher) -> None:
        self.matchers = list(matchers)

    def matcher(self) -> EntityMatcher:
        return self.matchers.pop(0) if len(self.matchers) > 1 else self.matchers[0]


def test_the_processor_asks_its_source_for_the_matcher_once_a_batch(
    catalog: EntityCatalog, matcher: EntityMatcher
) -> None:
    processor = EntityProcessor(Source(matcher, EntityMatcher(watched_catalog(catalog, WATCHED))))
    texts = ["Acme Robotics and Boeing", "Acme again"]
    first = processor.process([message(t, id=str(i)) for i, t in enumerate(texts)])
    second = processor.process([message(texts[0], id="2")])
    assert [tickers(m) for m in first] == [("BA",), ()]
    assert [tickers(m) for m in second] == [("ACMER", "BA")]
    assert second[0].result("entities").model.endswith("+watchlist")

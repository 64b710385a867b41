"""The matcher's rules on the built-in catalog: boundaries, case, common words, overlaps."""

from __future__ import annotations

import pytest

from processors.entities import Entity, EntityCatalog, EntityMatcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # common words are not companies
        ("Grandma's apple pie wins the county fair", set()),
        ("Apple pie sales soar at the county fair", set()),
        ("Analysts lift their target price for the sector", set()),
        ("Target price raised on strong demand", set()),
        ("New visa rules for foreign students", set()),
        ("Visa Rules Tightened for Chinese Students", set()),
        ("Block party shuts the street on Sunday", set()),
        ("Senate Republicans Block Fresh Aid", set()),
        ("Central Banks May Need Months to Return Inflation to Target", set()),
        ("Police Raids Target Italian Mafia", set()),
        ("Brazil's Amazon Region to Host UN Climate Summit", set()),
        ("Meet the Oracle of Sneakers", set()),
        ("Is this the Tesla of e-bikes?", set()),
        ("Support for GM crops grows in Europe", set()),
        # ... until something says they are
        ("Block Inc shares jump after earnings", {"XYZ"}),
        ("Block's Afterpay partners with Sephora", {"XYZ"}),
        ("Target shares fall as shoppers pull back", {"TGT"}),
        ("Target Corporation cuts its outlook", {"TGT"}),
        ("Target (TGT) cuts its outlook", {"TGT"}),
        ("Shoppers flock to Target for holiday deals", {"TGT"}),  # a capital mid-sentence
        ("Visa says cross-border travel spending recovered", {"V"}),
        ("Delta Says Travel Boom Drove Record Revenue", {"DAL"}),
        ("Chip design firm Arm sets share price for its IPO", {"ARM"}),
        ("GM tries to catch Tesla", {"GM", "TSLA"}),
        # names that are not words match when capitalised, wherever they stand
        ("Apple beats Q3 estimates, raises outlook", {"AAPL"}),
        ("Boeing's 737 MAX deliveries resume", {"BA"}),
        ("Boeing\u2019s Starliner losses total $1.5 billion", {"BA"}),
        ("Boeing Co and Airbus win orders", {"BA"}),
        ("Amazon.com cuts 9,000 jobs", {"AMZN"}),
        ("Microsoft-Activision deal cleared", {"MSFT"}),
        ("an Apple Watch ban is looming", {"AAPL"}),
        ("JPMorgan and Meta lead gains; Google slips", {"JPM", "META", "GOOGL"}),
        ("the boeing of tomorrow", set()),  # lower case: not a name
        # ALL CAPS
        ("BOEING DELIVERIES FALL FOR THIRD MONTH", {"BA"}),
        ("APPLE REACHES $50 MLN SETTLEMENT", {"AAPL"}),
        ("TARGET PRICE RAISED", set()),
        ("BLOCK SHARES SOAR AFTER CASH APP BEAT", {"XYZ"}),
        ("UPS AND DOWNS OF THE MARKET", set()),
        # acronyms: upper case only
        ("IBM and AMD unveil chips", {"IBM", "AMD"}),
        ("Ibm says nothing", set()),
        ("AT&T adds subscribers", {"T"}),
        # multiword names, and the longest of overlapping names
        ("Bank of America tops estimates", {"BAC"}),
        ("bank of america", set()),
        ("GE HealthCare spins off from GE", {"GEHC", "GE"}),
        ("GE HealthCare raises outlook", {"GEHC"}),
        ("Consolidated Edison raises rates", {"ED"}),
        ("Norfolk Southern derailment in Ohio", {"NSC"}),
        ("Warner Bros. Discovery delays releases", {"WBD"}),
        # word boundaries
        ("Pineapple and snapple prices", set()),
        ("The modelled figures for football", set()),
        ("https://t.co/3SdPsaBall", set()),
    ],
)
def test_names(matcher: EntityMatcher, text: str, expected: set[str]) -> None:
    assert matcher.find(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$BA up 4% leading industrials", {"BA"}),
        ("$aapl $tsla red to green", {"AAPL", "TSLA"}),
        ("$F and $T at lows", {"F", "T"}),
        ("$t-shirts at $c prices", set()),  # one or two letters: upper case only
        ("$GOOG $GOOGL split", {"GOOGL"}),
        ("$BRK.B and $BRK-B", {"BRK.B"}),
        ("$SPY $QQQ $BTC $AI held support", set()),  # not companies of the catalog
        ("Buy at $50, sell at $BA's highs", {"BA"}),
        ("US$BA", set()),
        ("$BAX is not $BA", {"BAX", "BA"}),
    ],
)
def test_cashtags_of_known_tickers(matcher: EntityMatcher, text: str, expected: set[str]) -> None:
    assert matcher.find(text) == expected


def test_common_words_of_any_catalog_need_a_sign() -> None:
    """A watchlist's names follow the same rules: Shell is a word."""
    matcher = EntityMatcher(EntityCatalog([Entity("SHEL", ("Shell",))], source="test"))
    assert matcher.find("It was set up as a shell company in Delaware") == set()
    assert matcher.find("Shell company directors face a ban") == set()
    assert matcher.find("Shell Company Rules Tightened") == set()
    assert matcher.find("Shell shares rise on buyback") == {"SHEL"}
    assert matcher.find("Oil majors such as Shell raised payouts") == {"SHEL"}


def test_a_name_of_two_entities_names_both() -> None:
    catalog = EntityCatalog([Entity("AA", ("Acme",)), Entity("BB", ("Acme",))])
    assert EntityMatcher(catalog).find("Acme beats estimates") == {"AA", "BB"}


def test_text_whose_lower_case_is_longer_keeps_offsets(matcher: EntityMatcher) -> None:
    assert matcher.find("\u0130stanbul office for Boeing") == {"BA"}

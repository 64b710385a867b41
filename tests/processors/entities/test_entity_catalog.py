"""The built-in catalog: the indices' companies, one entity per company, its short forms."""

from __future__ import annotations

from collections import Counter

from processors.entities import EntityCatalog
from processors.entities.catalog import NOT_NAMES, companies, normal_name, short_forms


def test_it_holds_the_sp500_and_nasdaq100(catalog: EntityCatalog) -> None:
    assert len(catalog) > 500
    for ticker in ("AAPL", "MSFT", "BA", "JPM", "XYZ", "ASML", "MELI", "PDD", "TEAM"):
        assert ticker in catalog.entities, ticker  # Nasdaq-100 only: ASML, MELI, PDD, TEAM
    assert catalog.source.startswith("pytickersymbols-")


def test_share_classes_are_one_entity(catalog: EntityCatalog) -> None:
    assert catalog.canonical("GOOG") == catalog.canonical("$googl") == "GOOGL"
    assert catalog.canonical("FOX") == "FOXA" and catalog.canonical("NWS") == "NWSA"
    assert catalog.canonical("BRK-B") == "BRK.B"
    assert catalog.canonical("NASDAQ:AAPL") == "AAPL"
    assert catalog.canonical("NOPE") is None
    assert "GOOG" not in catalog.entities


def test_common_short_forms(catalog: EntityCatalog) -> None:
    names = {e.id: e.names for e in catalog}
    assert {"Boeing"} <= set(names["BA"])
    assert {"JPMorgan", "JPMorgan Chase"} <= set(names["JPM"])
    assert {"Meta", "Meta Platforms", "Facebook"} <= set(names["META"])
    assert {"Alphabet", "Google"} <= set(names["GOOGL"])
    assert {"Target", "Target Corporation"} <= set(names["TGT"])
    assert {"Walt Disney", "Disney"} <= set(names["DIS"])
    assert "Coca-Cola" in names["KO"] and "Merck" in names["MRK"]
    assert names["AIZ"] == ("Assurant",)  # the package calls it Arthur J. Gallagher & Co.


def test_no_name_names_two_companies_and_no_word_is_a_name(catalog: EntityCatalog) -> None:
    counts = Counter(name.lower() for entity in catalog for name in set(entity.names))
    assert [name for name, n in counts.items() if n > 1] == []
    assert not NOT_NAMES & {name for entity in catalog for name in entity.names}


def test_short_forms_drop_legal_and_group_endings() -> None:
    assert short_forms("Boeing") == ["Boeing"]
    assert short_forms("Carnival Corporation & plc")[-1] == "Carnival"
    assert short_forms("Merck & Co.")[-1] == "Merck"
    assert short_forms("Eli Lilly and Company")[-1] == "Eli Lilly"
    assert short_forms("Nike, Inc.")[-1] == "Nike"
    assert short_forms("McDonald's") == ["McDonald's", "McDonalds"]
    assert normal_name("Brown\u2013Forman") == "Brown-Forman"
    assert normal_name("PTC (software company)") == "PTC"


def test_companies_group_share_classes_under_the_longest_ticker() -> None:
    [entity] = companies({"GOOG": "Alphabet Inc.", "GOOGL": "Alphabet Inc."}, extra={})
    assert (entity.id, entity.tickers, entity.names) == (
        "GOOGL",
        ("GOOG",),
        ("Alphabet Inc.", "Alphabet"),
    )

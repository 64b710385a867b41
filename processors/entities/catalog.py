"""The companies finsentry knows: ticker -> the names text calls them by.

The built-in catalog is the S&P 500 and the Nasdaq-100 as the `pytickersymbols` package
ships them (offline: its data is a Python module), with short forms derived from each
name ("Boeing Co" and "Boeing" from "Boeing", "Target" from "Target Corporation") and
a small set of well-known names the package does not give ("JPMorgan", "Google").
Watchlists from the config will add entities of their own to the same structure.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

INDICES = ("S&P 500", "NASDAQ 100")

# The package's names that are wrong (AIZ is Assurant, not a second Gallagher; APO is
# Apollo Global Management, not its REIT) or odd ("EBay"): ticker -> the right name.
NAME_FIXES: Mapping[str, str] = {
    "AIZ": "Assurant",
    "APO": "Apollo Global Management",
    "EBAY": "eBay",
    "KKR": "KKR & Co.",
    "BK": "BNY Mellon",
}

# Well-known names the package's names do not give, by entity id. Each one is how
# headlines commonly name the company: a former or shorter name, its main brand.
EXTRA_NAMES: Mapping[str, tuple[str, ...]] = {
    "AIG": ("AIG",),
    "AXP": ("Amex",),
    "BAC": ("BofA",),
    "BK": ("BNY",),
    "BMY": ("Bristol-Myers Squibb", "Bristol-Myers"),
    "BRK.B": ("Berkshire",),
    "C": ("Citi",),
    "CMCSA": ("NBCUniversal",),
    "COST": ("Costco Wholesale",),
    "CVS": ("CVS",),
    "DAL": ("Delta",),
    "DE": ("Deere",),
    "DIS": ("Disney",),
    "ED": ("Con Edison", "ConEd"),
    "EL": ("Estee Lauder",),
    "F": ("Ford",),
    "FITB": ("Fifth Third",),
    "FOXA": ("Fox News",),
    "GE": ("GE", "General Electric"),
    "GILD": ("Gilead",),
    "GM": ("GM",),
    "GOOGL": ("Alphabet", "Google"),
    "GS": ("Goldman",),
    "HD": ("Home Depot",),
    "HPE": ("HPE",),
    "JNJ": ("J&J",),
    "JPM": ("JPMorgan", "JP Morgan", "J.P. Morgan"),
    "KO": ("Coca-Cola", "Coke"),
    "LMT": ("Lockheed",),
    "LUV": ("Southwest",),
    "LYV": ("Live Nation", "Ticketmaster"),
    "MCD": ("McDonalds",),
    "MELI": ("MercadoLibre",),
    "META": ("Meta", "Facebook"),
    "MGM": ("MGM",),
    "NCLH": ("Norwegian Cruise",),
    "NOC": ("Northrop",),
    "NSC": ("Norfolk Southern",),
    "PDD": ("PDD",),
    "PEP": ("Pepsi",),
    "PG": ("P&G",),
    "PSKY": ("Paramount",),
    "RTX": ("Raytheon",),
    "SCHW": ("Schwab",),
    "SMCI": ("Super Micro",),
    "SLB": ("SLB",),
    "T": ("AT&T",),
    "TMO": ("Thermo Fisher",),
    "UPS": ("UPS",),
    "USB": ("US Bancorp",),
    "VLO": ("Valero",),
    "WBD": ("Warner Bros", "Warner Bros Discovery"),
    "WYNN": ("Wynn",),
    "XOM": ("Exxon", "Exxon Mobil"),
}

# Derived forms that name something else in headlines far more often than the company:
# "Nasdaq" is the index, "American" (International Group) and "News" (Corp) are words,
# and the rest are surnames or places ("Fed's John Williams says").
NOT_NAMES = frozenset(
    {"American", "Nasdaq", "News", "Cooper", "Dover", "Edison", "Hartford", "Lennox",
     "McCormick", "Rollins", "Roper", "Tyler", "Williams"}
)  # fmt: skip

# Endings a company's name drops in running text, stripped one after another:
# "TKO Group Holdings" -> "TKO Group" -> "TKO".
_SUFFIX = re.compile(
    r",?\s+(?:Inc\.?|Incorporated|Corporation(?:\s+&\s+plc)?|Corp\.?|Company|Companies"
    r"|(?:&|and)\s+Co(?:mpany|\.)?|Co\.?|plc|PLC|Limited|Ltd\.?|Holdings?|Group|Worldwide"
    r"|International|Technolog(?:y|ies)|Class\s+[A-C])$"
)
_PARENTHESIS = re.compile(r"\s*\([^)]*\)")
_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2011": "-", "\u2019": "'"})


@dataclass(frozen=True)
class Entity:
    """A company: its id (the ticker it is keyed by), other tickers for it, its names."""

    id: str
    names: tuple[str, ...]
    tickers: tuple[str, ...] = ()  # other share classes, e.g. GOOG beside GOOGL


class EntityCatalog:
    """Entities by id, and every ticker (share classes too) mapped to its entity's id.

    >>> catalog = EntityCatalog([Entity("GOOGL", ("Alphabet",), ("GOOG",))])
    >>> catalog.canonical("goog"), catalog.canonical("$GOOGL"), catalog.canonical("XYZ")
    ('GOOGL', 'GOOGL', None)
    """

    def __init__(self, entities: Iterable[Entity], source: str = "custom") -> None:
        self.entities: dict[str, Entity] = {e.id: e for e in entities}
        self.source = source
        self._ids = {t: e.id for e in self.entities.values() for t in (e.id, *e.tickers)}

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def __len__(self) -> int:
        return len(self.entities)

    def canonical(self, ticker: str) -> str | None:
        """The entity id a ticker names (any share class, with or without "$"), or None."""
        return self._ids.get(normal_ticker(ticker))

    @classmethod
    def builtin(cls) -> EntityCatalog:
        """The S&P 500 and Nasdaq-100 from `pytickersymbols`, with their short forms."""
        import pytickersymbols

        symbols = pytickersymbols.PyTickerSymbols()
        names: dict[str, str] = {}
        for index in INDICES:
            for stock in symbols.get_stocks_by_index(index):
                ticker = normal_ticker(stock["symbol"])
                names[ticker] = NAME_FIXES.get(ticker, stock["name"])
        return cls(
            companies(names, EXTRA_NAMES), source=f"pytickersymbols-{pytickersymbols.__version__}"
        )


def companies(
    names: Mapping[str, str], extra: Mapping[str, tuple[str, ...]] = EXTRA_NAMES
) -> list[Entity]:
    """One entity per company: tickers that share a name are share classes of one company,
    keyed by the longest ticker (GOOGL, FOXA, NWSA: the class that differs by a letter)."""
    classes: dict[str, list[str]] = defaultdict(list)
    for ticker, name in names.items():
        classes[normal_name(name)].append(ticker)
    entities = []
    for name, tickers in sorted(classes.items()):
        id = max(tickers, key=lambda t: (len(t), t))
        forms = dict.fromkeys([*short_forms(name), *extra.get(id, ())])
        entities.append(
            Entity(
                id,
                tuple(f for f in forms if f not in NOT_NAMES),
                tuple(sorted(t for t in tickers if t != id)),
            )
        )
    return entities


def short_forms(name: str) -> list[str]:
    """The name and the shorter forms running text uses: without "The", without its
    legal and group endings.

    >>> short_forms("The Walt Disney Company")
    ['The Walt Disney Company', 'Walt Disney Company', 'Walt Disney']
    >>> short_forms("TKO Group Holdings")
    ['TKO Group Holdings', 'TKO Group', 'TKO']
    """
    forms = [name]
    if name.startswith("The "):
        name = name[4:]
        forms.append(name)
    while match := _SUFFIX.search(name):
        name = name[: match.start()]
        forms.append(name)
    if "'" in name:  # "McDonald's" is often written "McDonalds"
        forms.append(name.replace("'", ""))
    return forms


def normal_name(name: str) -> str:
    """One spelling for dashes and apostrophes, no parenthesised notes, single spaces."""
    return " ".join(_PARENTHESIS.sub("", name.translate(_DASHES)).split())


def normal_ticker(ticker: str) -> str:
    """Upper case, without "$" or an exchange prefix, class suffix after a dot: "BRK.B".

    >>> normal_ticker("$brk-b"), normal_ticker("NASDAQ:AAPL")
    ('BRK.B', 'AAPL')
    """
    return ticker.strip().lstrip("$").rpartition(":")[2].upper().replace("-", ".")

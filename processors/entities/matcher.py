"""Which companies a text names: one Aho-Corasick pass finds every name and cashtag.

Every name of every entity, lower-cased, and every ticker as a cashtag ("$ba") is a key
of one automaton, built once. A text is lower-cased (keeping its length, so offsets
hold in the original) and scanned once; each hit is then checked against the original:

- word boundaries: no letter, digit or "_" just before or after ("Boeing's" is fine);
- case: each word of the name that starts upper-case starts upper-case in the text, and
  an acronym ("IBM", "AT&T") is upper-case throughout, so "apple pie" is not Apple;
  a cashtag of one or two letters is upper-case ("$F"), a longer one any case;
- a one-word name before a word that makes it a thing ("Apple pie", "Amazon
  rainforest"), or after "the" and before "of" or the sentence's end ("the Tesla of
  e-bikes", "the Oracle of Omaha", "deep in the Amazon."), is not a company unless a
  company sign (below) follows;
- a name that is also a common word, place or surname (`COMMON`: Target, Visa, Block,
  Delta...) needs a sign that it is the company: a company word after it ("Block Inc",
  "Target shares", "Visa says"), a possessive ("Visa's"), its ticker in brackets
  ("Target (TGT)"), a word like "firm" or "retailer" before it; or a capital that
  tells, which is one in the middle of a sentence of a text in sentence case (in
  Title Case, ALL CAPS or at a sentence's start every word is capitalised);
- where hits overlap, the leftmost, then the longest, wins: "GE HealthCare", not "GE".

Cashtags count only for known tickers: "$BTC", "$SPY" or a stray "$AI" name no company
of the catalog (a watchlist adds its own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ahocorasick

from processors.entities.catalog import EntityCatalog, normal_ticker

# Names that are also common words, places or surnames, lower-cased: they need a sign.
COMMON = frozenset(
    {
        # words
        "align", "arm", "ball", "block", "booking", "carnival", "coke", "delta", "everest",
        "fox", "match", "microchip", "mosaic", "pool", "progressive",
        "southern", "southwest", "target", "tapestry", "travelers", "visa", "waters",
        "zebra",
        # places and surnames
        "baxter", "campbell's", "corning", "domino's", "dominos", "lowe's", "otis",
        "schwab",
        # phrases
        "analog devices", "digital realty", "genuine parts", "global payments",
        "interactive brokers", "international paper", "iron mountain", "public storage",
        "realty income", "steel dynamics", "trade desk", "waste management",
        # words that name companies outside the built-in list, for watchlists
        "discover", "gap", "shell", "snap",
        # acronyms that are also words or other bodies' names
        "aes", "apa", "gm", "ptc", "tko", "ups",
    }
)  # fmt: skip

# After a name: words that make it the company. Before a name: words that introduce one.
COMPANY_AFTER = frozenset(
    {
        "inc", "incorporated", "corp", "corporation", "co", "plc", "ltd", "llc",
        "shares", "share", "stock", "stocks", "shareholders", "investors", "ipo",
        "ceo", "cfo", "chief", "boss", "executives", "earnings", "revenue", "sales",
        "profit", "results", "quarter", "quarterly", "guidance", "outlook", "forecast",
        "says", "said", "sees", "reports", "posts", "plans", "beats", "misses", "raises",
        "cuts", "warns", "agrees",
    }
)  # fmt: skip
COMPANY_BEFORE = frozenset(
    {"firm", "company", "giant", "maker", "retailer", "airline", "carrier", "lender",
     "insurer", "chipmaker", "rival", "conglomerate"}
)  # fmt: skip
# After a one-word name: words that make it a thing or a place, not the company.
THING_AFTER = frozenset(
    {"pie", "pies", "juice", "cider", "orchard", "orchards", "tree", "trees",
     "rainforest", "forest", "river", "basin", "region", "jungle", "deforestation",
     "tribe", "tribes", "crops", "crop", "food", "foods"}
)  # fmt: skip
# Words that Title Case may leave lower-case: they do not show sentence case.
TITLE_LOWER = frozenset(
    {"with", "from", "into", "onto", "over", "upon", "amid", "than", "that", "after",
     "about", "near", "past", "like", "versus", "under", "without", "against"}
)  # fmt: skip

_FOLD = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2011": "-"})
_SENTENCE_ENDS = frozenset('.!?;:"')
_SENTENCE_OPENERS = frozenset(".!?:;|\"'(-\u2013\u2014\u2022\u2026\u201c\u2018")
_NEXT_WORD = re.compile(r"\s+([a-z0-9&]+)")
_PREVIOUS_WORD = re.compile(r"([a-z0-9&]+)[\s'\"]+$")
_TICKER_IN_BRACKETS = re.compile(r"\s*\((?:[a-z]+:\s*)?\$?([a-z][a-z.\-]*)\)")
_LOWER_WORD = re.compile(r"\b[a-z]{4,}\b")
_NOT_WORDS = re.compile(r"https?://\S+|[@#$]\w+")


@dataclass(frozen=True, slots=True)
class Alias:
    """One key's meaning: which entity, and the rules its hits must pass."""

    entity: str
    length: int  # of the key
    caps: tuple[int, ...]  # offsets that must be upper-case in the text
    common: bool  # needs a sign that it is the company
    word: bool  # one word: "pie" after it, or "the" before and "of" after, make it a thing
    acronym: bool
    tickers: frozenset[str]  # the entity's tickers, for "(TGT)" after its name


class EntityMatcher:
    """Finds the entities of a catalog that a text names; built once, used for every text.

    >>> from processors.entities.catalog import Entity
    >>> catalog = EntityCatalog([Entity("TGT", ("Target",)), Entity("BA", ("Boeing",))])
    >>> matcher = EntityMatcher(catalog)
    >>> sorted(matcher.find("Boeing's deliveries rise; $TGT and Target shares fall"))
    ['BA', 'TGT']
    >>> matcher.find("Target price raised; central banks miss their target")
    set()
    """

    def __init__(self, catalog: EntityCatalog) -> None:
        self.catalog = catalog
        aliases: dict[str, list[Alias]] = {}
        for entity in catalog:
            tickers = frozenset((entity.id, *entity.tickers))
            for name in entity.names:
                key = fold(name)
                aliases.setdefault(key, []).append(_name_alias(entity.id, name, key, tickers))
            for ticker in tickers:
                for spelling in {ticker, ticker.replace(".", "-")}:
                    key = "$" + fold(spelling)
                    caps = tuple(range(1, len(key))) if len(ticker) <= 2 else ()
                    alias = Alias(entity.id, len(key), caps, False, False, False, tickers)
                    aliases.setdefault(key, []).append(alias)
        self._automaton = ahocorasick.Automaton()
        for key, found in aliases.items():
            self._automaton.add_word(key, tuple(found))
        self._automaton.make_automaton()

    def find(self, text: str) -> set[str]:
        """The ids of the entities `text` names."""
        folded = fold(text)
        view = _Text(text, folded)
        hits = []
        for last, aliases in self._automaton.iter(folded):
            end = last + 1
            for alias in aliases:
                start = end - alias.length
                if view.bounded(start, end) and _accepts(alias, view, start, end):
                    hits.append((start, -end, alias.entity))
        hits.sort()
        found: set[str] = set()
        reached, span = 0, (0, 0)
        for start, negative_end, entity in hits:  # the leftmost, then longest, hit wins
            if start >= reached:
                reached, span = -negative_end, (start, negative_end)
                found.add(entity)
            elif (start, negative_end) == span:  # a name two entities share names both
                found.add(entity)
        return found


def fold(text: str) -> str:
    """Lower case and one apostrophe, keeping the length so that offsets still hold."""
    folded = text.lower()
    if len(folded) != len(text):  # a letter whose lower case is longer, e.g. "İ"
        folded = "".join(c.lower()[0] for c in text)
    return folded.translate(_FOLD)


def _name_alias(entity: str, name: str, key: str, tickers: frozenset[str]) -> Alias:
    acronym = not any(c.islower() for c in name)
    caps = tuple(
        i
        for i, c in enumerate(name)
        if c.isupper() and (acronym or i == 0 or not name[i - 1].isalpha())
    )
    word = " " not in name
    return Alias(entity, len(key), caps, key in COMMON, word, acronym, tickers)


def _accepts(alias: Alias, view: _Text, start: int, end: int) -> bool:
    text = view.text
    if not all(text[start + i].isupper() for i in alias.caps):
        return False
    if not (alias.word or alias.common):
        return True
    thing = alias.word and view.thing(start, end)
    if not (thing or alias.common):
        return True
    if view.company_sign(alias, start, end):
        return True
    if thing:
        return False
    if alias.acronym:
        return not view.all_caps
    return not view.all_caps and view.sentence_case and not view.sentence_start(start)


class _Text:
    """One text and its folded copy, with what the rules ask of it worked out once."""

    __slots__ = ("_sentence_case", "folded", "text")

    def __init__(self, text: str, folded: str) -> None:
        self.text = text
        self.folded = folded
        self._sentence_case: bool | None = None

    def bounded(self, start: int, end: int) -> bool:
        folded = self.folded
        return (start == 0 or not _word_char(folded[start - 1])) and (
            end == len(folded) or not _word_char(folded[end])
        )

    def company_sign(self, alias: Alias, start: int, end: int) -> bool:
        folded = self.folded
        if folded.startswith("'s", end):
            return True
        if self.next_word(end) in COMPANY_AFTER or self.previous_word(start) in COMPANY_BEFORE:
            return True
        bracket = _TICKER_IN_BRACKETS.match(folded, end)
        return bracket is not None and normal_ticker(bracket[1]) in alias.tickers

    def thing(self, start: int, end: int) -> bool:
        after = self.next_word(end)
        if after in THING_AFTER:
            return True
        if self.previous_word(start) != "the":
            return False
        rest = self.folded[end:].lstrip()
        return after == "of" or not rest or rest[0] in _SENTENCE_ENDS

    def next_word(self, end: int) -> str:
        match = _NEXT_WORD.match(self.folded, end)
        return match[1] if match else ""

    def previous_word(self, start: int) -> str:
        match = _PREVIOUS_WORD.search(self.folded, max(0, start - 30), start)
        return match[1] if match else ""

    def sentence_start(self, start: int) -> bool:
        before = self.text[:start].rstrip()
        return not before or before[-1] in _SENTENCE_OPENERS

    @property
    def all_caps(self) -> bool:
        return self.text.isupper()

    @property
    def sentence_case(self) -> bool:
        """Whether some longer word is lower-case, as Title Case would not leave it."""
        if self._sentence_case is None:
            words = _LOWER_WORD.findall(_NOT_WORDS.sub(" ", self.text))
            self._sentence_case = any(w not in TITLE_LOWER for w in words)
        return self._sentence_case


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"

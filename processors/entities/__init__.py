"""Entities: which listed companies a message is about, as tickers.

`EntityCatalog` holds the companies (built in: the S&P 500 and Nasdaq-100 from
`pytickersymbols`, with their short forms); `EntityMatcher` finds their names and
cashtags in a text in one Aho-Corasick pass, with word-boundary and case rules;
`EntityProcessor` appends the tickers, the feed's own merged in, to every message;
`watched_catalog` adds a watchlist's entities and names to a catalog.
"""

from processors.entities.catalog import Entity, EntityCatalog
from processors.entities.matcher import EntityMatcher
from processors.entities.processor import TASK, EntityProcessor, MatcherSource, tickers
from processors.entities.watchlist import watched_catalog

__all__ = [
    "TASK",
    "Entity",
    "EntityCatalog",
    "EntityMatcher",
    "EntityProcessor",
    "MatcherSource",
    "tickers",
    "watched_catalog",
]

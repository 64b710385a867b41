"""Watchlists: the entities a user adds to the catalog, by id and the names text uses.

A watched id the catalog knows (any share class) gets the aliases as extra names of
that company; any other id (a private company, a fund) becomes an entity of its own,
found by its aliases, its cashtag and the feed's tickers. Aliases are matched as the
catalog's names are, with the same case, word-boundary and common-word rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from processors.entities.catalog import Entity, EntityCatalog, normal_name, normal_ticker


def watched_catalog(catalog: EntityCatalog, aliases: Mapping[str, Sequence[str]]) -> EntityCatalog:
    """`catalog` with the watched entities added: `aliases` maps each watched id to the
    names it is also called by.

    >>> catalog = EntityCatalog([Entity("GOOGL", ("Alphabet",), ("GOOG",))], source="base")
    >>> merged = watched_catalog(catalog, {"goog": ["Google"], "ACMER": ["Acme Robotics"]})
    >>> [(e.id, e.names) for e in merged], merged.source
    ([('GOOGL', ('Alphabet', 'Google')), ('ACMER', ('Acme Robotics',))], 'base+watchlist')
    """
    entities = dict(catalog.entities)
    for id, names in aliases.items():
        known = catalog.canonical(id)
        entity = entities.get(known) if known else None
        if entity is None:
            entity = Entity(normal_ticker(id), ())
        added = dict.fromkeys([*entity.names, *map(normal_name, names)])
        entities[entity.id] = Entity(entity.id, tuple(added), entity.tickers)
    return EntityCatalog(entities.values(), source=f"{catalog.source}+watchlist")

"""The job's watchlist as it stands now: the config's entities and its file, re-read
when the file changes, so that a running job takes a new list without a restart (and
without losing any window or detector state, which live elsewhere).

The file's modification time is looked at, at most every `check_seconds`, whenever a
step asks (the entity processor once per batch, the detectors per entity window, the
metrics per window and scrape). A version that cannot be read or is invalid is logged,
counted (`rejected`), and skipped: the last good list stays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from flows.config import WatchedEntityConfig, WatchlistConfig
from processors.entities import EntityCatalog, EntityMatcher, watched_catalog

log = logging.getLogger(__name__)

RELOAD_OUTCOMES = ("loaded", "rejected")


@dataclass(frozen=True)
class Watched:
    """One version of the list: the entities by their catalog id, and the catalog with
    their aliases added (None for an empty list: the built-in catalog as it is)."""

    version: int
    entities: Mapping[str, WatchedEntityConfig]
    catalog: EntityCatalog | None


class LiveWatchlist:
    """The current watchlist, shared by the steps of one job (`WatchlistConfig.live()`).

    `matcher()` is the entity processor's `MatcherSource`: a new automaton is built
    after each change, once, when first asked for. `reloads` counts the file's changes
    by outcome, and `rejected` says whether the file as it stands was refused (the job
    runs an older list until it is mended), for the metrics.
    """

    def __init__(
        self,
        config: WatchlistConfig,
        base: EntityCatalog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._base = base
        self._clock = clock
        self._lock = threading.RLock()
        self._stamp = _stamp(config.file)
        self._next_check = clock() + config.check_seconds
        self._matcher: tuple[int, EntityMatcher] | None = None
        self.reloads: Counter[str] = Counter(dict.fromkeys(RELOAD_OUTCOMES, 0))
        self.rejected = False
        self._watched = self._build(1, config.read())

    @cached_property
    def base(self) -> EntityCatalog:
        """The built-in catalog, loaded only when something needs it."""
        return self._base or EntityCatalog.builtin()

    def current(self) -> Watched:
        """The list as it stands, after a look at the file if one is due."""
        with self._lock:
            if self.config.file is not None and self._clock() >= self._next_check:
                self._next_check = self._clock() + self.config.check_seconds
                self._reload_if_changed(self.config.file)
            return self._watched

    def entity(self, ticker: str) -> WatchedEntityConfig | None:
        """The watched entity with this catalog id, if it is watched."""
        return self.current().entities.get(ticker)

    def matcher(self) -> EntityMatcher:
        watched = self.current()
        with self._lock:
            if self._matcher is None or self._matcher[0] != watched.version:
                catalog = watched.catalog or self.base
                self._matcher = (watched.version, EntityMatcher(catalog))
            return self._matcher[1]

    def _reload_if_changed(self, file: Path) -> None:
        stamp = _stamp(file)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._watched = self._build(self._watched.version + 1, self.config.read())
        except ValueError as exc:
            self.reloads["rejected"] += 1
            self.rejected = True
            log.error("watchlist %s not reloaded, keeping the last good list: %s", file, exc)
            return
        self.reloads["loaded"] += 1
        self.rejected = False
        log.info("watchlist %s reloaded: %d entities", file, len(self._watched.entities))

    def _build(self, version: int, entities: list[WatchedEntityConfig]) -> Watched:
        if not entities:  # nothing to add: the built-in catalog, loaded if asked for
            return Watched(version, {}, None)
        catalog = watched_catalog(self.base, {e.id: e.aliases for e in entities})
        by_id: dict[str, WatchedEntityConfig] = {}
        for entity in entities:
            id = catalog.canonical(entity.id) or entity.id
            if id in by_id:
                raise ValueError(f"{by_id[id].id} and {entity.id} are one company, {id}")
            by_id[id] = entity
        return Watched(version, by_id, catalog)


def _stamp(file: Path | None) -> tuple[int, int] | None:
    """What tells a changed file: its modification time and size (None: no file)."""
    if file is None:
        return None
    try:
        stat = file.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size

"""News-volume spikes: a window's count against its key's usual count at that hour of the week.

A burst of coverage can matter whatever its tone (a profit warning read as neutral, a
takeover rumour). Volume is seasonal by nature (nights and weekends are quiet), so the
usual count is learnt per slot of the week: the window's hour of the week, or its day
for daily windows. Counts are overdispersed (news comes in bursts), so the count is
judged by the upper tail of a negative binomial whose dispersion is learnt from the
key's own history. Scoring (`log_nb_upper_tail`) is kept apart from the state and
thresholds (`VolumeDetector`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from processors.detection.base import REBASE_SCALE, Assessment, Detector, fading
from processors.envelope.message import TopicWindow
from processors.stream.window import OTHER_SOURCES

_LN10 = math.log(10.0)
_TAIL_RTOL = 1e-16
_WEEK = timedelta(weeks=1)
_MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday at 00:00: slots count from there


def log_nb_upper_tail(k: int, mean: float, dispersion: float) -> float:
    """Natural log of P(X >= k) for X ~ NegativeBinomial(mean, size = 1 / dispersion).

    Var X = mean + dispersion * mean^2; dispersion 0 is the Poisson. Sums the pmf from
    k upwards in log space by the ratio P(j+1)/P(j) = q (j + r) / (j + 1), stopping once
    the rest is bounded by a geometric series below 1e-16 of the sum.

    >>> round(math.exp(log_nb_upper_tail(3, 1.0, 0.0)), 4)  # Poisson(1): P(X >= 3)
    0.0803
    >>> log_nb_upper_tail(0, 2.0, 0.5)
    0.0
    """
    if mean <= 0.0 or dispersion < 0.0:
        raise ValueError(f"need mean > 0 and dispersion >= 0, got {mean}, {dispersion}")
    if k <= 0:
        return 0.0
    if dispersion < 1e-12:  # Poisson
        r, q = math.inf, 0.0
        log_term = k * math.log(mean) - mean - math.lgamma(k + 1)
    else:
        r = 1.0 / dispersion
        q = mean / (r + mean)
        log_term = (
            math.lgamma(k + r)
            - math.lgamma(r)
            - math.lgamma(k + 1)
            + r * math.log(r / (r + mean))
            + k * math.log(q)
        )
    top, total, j = log_term, 1.0, k
    while True:
        ratio = mean / (j + 1) if q == 0.0 else q * (j + r) / (j + 1)
        log_term += math.log(ratio)
        j += 1
        if log_term > top:
            total = total * math.exp(top - log_term) + 1.0
            top = log_term
        else:
            total += math.exp(log_term - top)
        # Later ratios fall towards q when r >= 1 and rise towards it when r < 1.
        bound = max(ratio, q)
        if bound < 1.0:
            rest = math.exp(log_term - top) * bound / (1.0 - bound)
            if rest < _TAIL_RTOL * total:
                break
    return min(0.0, top + math.log(total))


def week_slot(start: datetime, step: timedelta) -> int:
    """The window's slot of the week: its hour of the week, or its day for daily windows
    (windows shorter than an hour share their hour's slot)."""
    slot = max(step, timedelta(hours=1))
    if slot >= _WEEK:
        return 0
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    return int(((start - _MONDAY) % _WEEK) // slot)


@dataclass
class SourceUsual:
    """One source's usual count on one key: decayed sums per slot of the week and overall,
    over the key's windows in which the source published anywhere in the stream.

    The sums are kept times `scale`, so that ageing them is one multiplication (a
    source has up to 168 slots, a key many sources): the true, faded, sum is the stored
    one over `scale`, and they are brought back to true sums once it reaches
    `REBASE_SCALE`.
    """

    slots: dict[int, list[float]] = field(default_factory=dict)  # slot -> [count, windows]
    count: float = 0.0
    windows: float = 0.0
    # Decayed sums of squared residuals, for the source's own burstiness.
    excess: float = 0.0  # sum w * ((n - mu)^2 - mu)
    mu_sq: float = 0.0  # sum w * mu^2
    residuals: float = 0.0  # sum w over the windows in `excess`
    scale: float = 1.0

    def seen(self) -> float:
        """The key's windows (decayed) in which the source was active."""
        return self.windows / self.scale

    def mean(self, prior_items: float) -> float:
        """The usual count per window over all slots, with one prior window of
        `prior_items` items."""
        return (self.count / self.scale + prior_items) / (self.seen() + 1.0)

    def slot_windows(self, slot: int) -> float:
        return self.slots.get(slot, (0.0, 0.0))[1] / self.scale

    def expected(self, slot: int, prior_windows: float, prior_items: float) -> float:
        """The usual count of `slot`, shrunk to the source's mean by `prior_windows`."""
        count, windows = self.slots.get(slot, (0.0, 0.0))
        mean = self.mean(prior_items)
        return (count / self.scale + prior_windows * mean) / (windows / self.scale + prior_windows)

    def dispersion(self, prior: float, prior_windows: float, floor: float) -> float:
        """Overdispersion of its counts around their usual (0: Poisson), shrunk to
        `prior` by `prior_windows` windows' worth of weight."""
        raw = self.excess / self.mu_sq if self.mu_sq > 0.0 else prior
        residuals = self.residuals / self.scale
        shrunk = (prior_windows * prior + residuals * raw) / (prior_windows + residuals)
        return max(floor, shrunk)

    def learn(self, slot: int, n: int, usual: float, mature: float) -> None:
        """Learn `n` items in `slot`, whose usual was `usual` before; the residual counts
        once the slot has been seen in `mature` windows."""
        weight = self.scale
        if self.slot_windows(slot) >= mature:
            # Residuals count once the slot's usual rests mostly on the slot itself: a
            # new slot's guess (the mean) would pass seasonality off as bursts.
            self.excess += ((n - usual) ** 2 - usual) * weight
            self.mu_sq += usual * usual * weight
            self.residuals += weight
        sums = self.slots.setdefault(slot, [0.0, 0.0])
        sums[0] += n * weight
        sums[1] += weight
        self.count += n * weight
        self.windows += weight

    def fade(self, decay: float) -> None:
        self.scale /= decay
        if self.scale < REBASE_SCALE:
            return
        scale, self.scale = self.scale, 1.0
        for sums in self.slots.values():
            sums[0] /= scale
            sums[1] /= scale
        self.count /= scale
        self.windows /= scale
        self.excess /= scale
        self.mu_sq /= scale
        self.residuals /= scale


@dataclass
class VolumeDetector(Detector):
    """Fires when a window holds too many items for its key and slot of the week, against
    the usual counts of the sources that published in the stream in that window.

    The key's usual count is the sum over those sources of each one's usual count on
    the key: a feed that starts adds its own usual once it has one, so its first weeks
    are not a spike, and a feed that stops takes its usual with it. A source's items
    are judged once it is established on the key: active in `warmup_windows` of the
    key's windows, and in the window's slot (`warmup_slot_windows`: its first week
    teaches its week); until then they are learnt, not judged. Windows whose items
    carry no source (older windows) count as one source; at most `max_sources` are told
    apart per key, later ones are pooled.

    A source's usual count per slot is its decayed mean (half-life `half_life_seconds`
    of event time), shrunk towards its mean over all slots by `prior_slot_windows`
    windows' worth of weight (a prior of one item a window for the key, shared among
    its sources); the windows in which a source published elsewhere in the stream and
    not on this key teach it zeros. Each source has its own burstiness (a feed that
    posts in batches is not a spike each time): a method-of-moments dispersion from its
    decayed squared residuals, shrunk to `prior_dispersion` by
    `prior_dispersion_windows`. The window's count is judged by a negative binomial
    with the sum of the sources' variances and the uncertainty of their usuals.

    A window fires when P(X >= n) < `p_fire`, n is at least `min_ratio` times the usual
    and the key has seen `warmup_windows`; it recovers when p > `p_resolve` or n is back
    under `resolve_ratio` times the usual. Windows with no items are not judged or
    learnt (a key cannot tell a quiet hour from a feed that stopped), so the usual count
    is that of windows with items. Abnormal windows, and windows while an alert fires,
    are not learnt from.

    >>> from datetime import datetime, timedelta
    >>> def window(n, hour, sources=None):
    ...     start = datetime(2024, 1, 1) + timedelta(hours=hour)
    ...     sources = sources or {"wire": n}
    ...     return TopicWindow("all", start, start + timedelta(hours=1), n, 0, n, 0, 0.0,
    ...                        0.0, sources=sources, stream_sources=tuple(sources))
    >>> d = VolumeDetector(p_fire=1e-4)
    >>> calm = [d.update(window(10 + h % 3, h), False).abnormal for h in range(24 * 14)]
    >>> any(calm)
    False
    >>> d.update(window(80, 24 * 14), False).abnormal
    True
    >>> d.update(window(11, 24 * 14 + 2), False).abnormal  # calm again: the alert may end
    False
    >>> d.update(window(71, 24 * 14 + 3, {"wire": 11, "new feed": 60}), False).abnormal
    False
    """

    score_name: ClassVar[str] = "-log10 p"

    step_seconds: float = 3600.0  # the windows' step: it picks the slots
    p_fire: float = 1e-4
    p_resolve: float = 0.05
    min_ratio: float = 2.0
    resolve_ratio: float = 1.5
    prior_slot_windows: float = 1.0
    prior_dispersion: float = 0.25  # news comes in bursts: start cautious
    prior_dispersion_windows: float = 10.0
    min_dispersion: float = 0.01
    half_life_seconds: float = 28 * 86_400.0
    warmup_windows: float = 12.0
    warmup_slot_windows: float = 0.8  # the slot seen about once: a week for hourly windows
    max_sources: int = 32

    sources: dict[str, SourceUsual] = field(default_factory=dict)
    seen: float = 0.0  # windows judged (decayed), for the warm-up
    last_end: datetime | None = None

    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        self._age(window.end)
        slot = week_slot(window.start, timedelta(seconds=self.step_seconds))
        counts, active = self._sources_of(window)
        judged = [name for name in active if self._established(name, slot)]
        mean = self.expected(slot, judged)
        if window.n <= 0:
            return Assessment(abnormal=False, recovered=False, baseline=mean, score=0.0)
        n = sum(counts.get(name, 0) for name in judged)
        log_p = 0.0
        if judged and n > 0:
            log_p = log_nb_upper_tail(n, mean, self.predictive_dispersion(slot, mean, judged))
        abnormal = (
            self.seen >= self.warmup_windows
            and bool(judged)
            and log_p < math.log(self.p_fire)
            and n >= self.min_ratio * mean
        )
        recovered = log_p > math.log(self.p_resolve) or n <= self.resolve_ratio * mean
        self.seen += 1.0
        if not (abnormal or firing):
            self._learn(slot, counts, active)
        return Assessment(
            abnormal=abnormal, recovered=recovered, baseline=mean, score=-log_p / _LN10
        )

    def expected(self, slot: int, sources: list[str]) -> float:
        """The usual count of `slot` from these (established) sources."""
        if not sources:
            return 0.0
        prior_items = self._prior_items()
        return sum(self._usual(name, slot, prior_items) for name in sources)

    def predictive_dispersion(self, slot: int, mean: float, sources: list[str]) -> float:
        """The dispersion of a new window's count, the sum of its sources' counts: each
        source's variance is its usual u plus its own dispersion d times u^2, plus the
        uncertainty of u, learnt from `w` windows (and the prior's weight) of that
        variance each, so var = u + d (1 + 1/w) u^2 + u / w; their sum, as a dispersion
        of the total `mean`."""
        prior_items = self._prior_items()
        excess = 0.0
        for name in sources:
            usual = self.sources[name]
            u = self._usual(name, slot, prior_items)
            w = usual.slot_windows(slot) + self.prior_slot_windows
            d = usual.dispersion(
                self.prior_dispersion, self.prior_dispersion_windows, self.min_dispersion
            )
            excess += d * (1.0 + 1.0 / w) * u * u + u / w
        return excess / (mean * mean)

    def _prior_items(self) -> float:
        """The prior's items a window for each source: one for the key, shared out."""
        return 1.0 / max(len(self.sources), 1)

    def _usual(self, name: str, slot: int, prior_items: float) -> float:
        """Source `name`'s usual count on this key in `slot`."""
        return self.sources[name].expected(slot, self.prior_slot_windows, prior_items)

    def _sources_of(self, window: TopicWindow) -> tuple[dict[str, int], list[str]]:
        """(the key's items by tracked source, the tracked sources active in the stream).
        Windows without sources are one source's; sources past `max_sources` are pooled."""
        if not window.sources:
            return {OTHER_SOURCES: window.n}, [OTHER_SOURCES]
        counts: dict[str, int] = {}
        active: list[str] = []
        known = set(self.sources)
        for source in sorted({*window.stream_sources, *window.sources}):
            # Its own name while there is room (one kept for the pool), else pooled.
            room = source in known or len(known) - (OTHER_SOURCES in known) < self.max_sources - 1
            name = source if room else OTHER_SOURCES
            known.add(name)
            counts[name] = counts.get(name, 0) + window.sources.get(source, 0)
            if name not in active:
                active.append(name)
        return counts, active

    def _established(self, name: str, slot: int) -> bool:
        usual = self.sources.get(name)
        return (
            usual is not None
            and usual.seen() >= self.warmup_windows
            and usual.slot_windows(slot) >= self.warmup_slot_windows
        )

    def _learn(self, slot: int, counts: dict[str, int], active: list[str]) -> None:
        prior_items = self._prior_items()  # before this window's new sources
        for name in active:
            usual = self.sources.setdefault(name, SourceUsual())
            before = self._usual(name, slot, prior_items)
            usual.learn(slot, counts.get(name, 0), before, mature=self.prior_slot_windows)

    def _age(self, end: datetime) -> None:
        """Decay every sum by the event time since the last window (never backwards)."""
        decay = fading(self.last_end, end, self.half_life_seconds)
        self.last_end = max(self.last_end or end, end)
        if decay == 1.0:
            return
        for usual in self.sources.values():
            usual.fade(decay)
        self.seen *= decay

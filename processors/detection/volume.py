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

from processors.detection.base import Assessment, Detector, fading
from processors.envelope.message import TopicWindow

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
class VolumeDetector(Detector):
    """Fires when a window holds too many items for its key and slot of the week.

    The usual count of a slot is its decayed mean (half-life `half_life_seconds` of
    event time), shrunk towards the key's mean over all slots by `prior_slot_windows`
    windows' worth of weight. The dispersion is a method-of-moments estimate from the
    decayed squared residuals, shrunk to `prior_dispersion` by
    `prior_dispersion_windows`; a window is judged with it plus the uncertainty of its
    slot's usual. A window fires when P(X >= n) < `p_fire`, n is at least `min_ratio`
    times the usual, the key has seen `warmup_windows` and the slot has been seen
    (`warmup_slot_windows`: a key's first week teaches its week); it recovers when
    p > `p_resolve` or n is back under `resolve_ratio` times the usual. Windows with
    no items are not judged or learnt (a key cannot tell a quiet hour from a feed that
    stopped), so the usual count is that of windows with items. Abnormal windows, and
    windows while an alert fires, are not learnt from.

    >>> from datetime import datetime, timedelta
    >>> def window(n, hour):
    ...     start = datetime(2024, 1, 1) + timedelta(hours=hour)
    ...     return TopicWindow("all", start, start + timedelta(hours=1), n, 0, n, 0, 0.0, 0.0)
    >>> d = VolumeDetector(p_fire=1e-4)
    >>> calm = [d.update(window(10 + h % 3, h), False).abnormal for h in range(24 * 14)]
    >>> any(calm)
    False
    >>> d.update(window(80, 24 * 14), False).abnormal
    True
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

    # Decayed sums: per slot (count, windows), over all slots, and of squared residuals.
    slots: dict[int, list[float]] = field(default_factory=dict)
    count: float = 0.0
    windows: float = 0.0
    excess: float = 0.0  # sum w * ((n - mu)^2 - mu)
    mu_sq: float = 0.0  # sum w * mu^2
    residuals: float = 0.0  # sum w over the windows in `excess`
    seen: float = 0.0  # windows judged (decayed), for the warm-up
    last_end: datetime | None = None

    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        self._age(window.end)
        n = window.n
        slot = week_slot(window.start, timedelta(seconds=self.step_seconds))
        mean = self.expected(slot)
        if n <= 0:
            return Assessment(abnormal=False, recovered=False, baseline=mean, score=0.0)
        log_p = log_nb_upper_tail(n, mean, self.predictive_dispersion(slot, mean))
        abnormal = (
            self.seen >= self.warmup_windows
            and self.slots.get(slot, (0.0, 0.0))[1] >= self.warmup_slot_windows
            and log_p < math.log(self.p_fire)
            and n >= self.min_ratio * mean
        )
        recovered = log_p > math.log(self.p_resolve) or n <= self.resolve_ratio * mean
        self.seen += 1.0
        if not (abnormal or firing):
            self._learn(slot, n, mean)
        return Assessment(
            abnormal=abnormal, recovered=recovered, baseline=mean, score=-log_p / _LN10
        )

    def mean(self) -> float:
        """The key's usual count per window with items, over all slots."""
        return (self.count + 1.0) / (self.windows + 1.0)  # one prior window of one item

    def expected(self, slot: int) -> float:
        """The usual count of `slot`, shrunk to the key's mean."""
        count, windows = self.slots.get(slot, (0.0, 0.0))
        weight = self.prior_slot_windows
        return (count + weight * self.mean()) / (windows + weight)

    def dispersion(self) -> float:
        """Overdispersion of counts around their slot's usual (0: Poisson)."""
        raw = self.excess / self.mu_sq if self.mu_sq > 0.0 else self.prior_dispersion
        weight = self.prior_dispersion_windows
        shrunk = (weight * self.prior_dispersion + self.residuals * raw) / (weight + self.residuals)
        return max(self.min_dispersion, shrunk)

    def predictive_dispersion(self, slot: int, mean: float) -> float:
        """The dispersion of a new window's count: the counts' own, plus the uncertainty
        of the slot's usual, learnt from `w` windows (and the prior's weight) of
        variance mean + dispersion * mean^2 each."""
        dispersion = self.dispersion()
        w = self.slots.get(slot, (0.0, 0.0))[1] + self.prior_slot_windows
        return dispersion * (1.0 + 1.0 / w) + 1.0 / (mean * w)

    def _learn(self, slot: int, n: int, mean: float) -> None:
        sums = self.slots.setdefault(slot, [0.0, 0.0])
        if sums[1] >= self.prior_slot_windows:
            # Residuals count once the slot's usual rests mostly on the slot itself: a
            # new slot's guess (the key's mean) would pass seasonality off as bursts.
            self.excess += (n - mean) ** 2 - mean
            self.mu_sq += mean * mean
            self.residuals += 1.0
        sums[0] += n
        sums[1] += 1.0
        self.count += n
        self.windows += 1.0

    def _age(self, end: datetime) -> None:
        """Decay every sum by the event time since the last window (never backwards)."""
        decay = fading(self.last_end, end, self.half_life_seconds)
        self.last_end = max(self.last_end or end, end)
        if decay == 1.0:
            return
        for sums in self.slots.values():
            sums[0] *= decay
            sums[1] *= decay
        self.count *= decay
        self.windows *= decay
        self.excess *= decay
        self.mu_sq *= decay
        self.residuals *= decay
        self.seen *= decay

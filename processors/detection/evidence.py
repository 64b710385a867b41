"""Negative-share surges judged as statistical evidence, not as counts.

A window's negative count k of n is scored by how surprising it is under the key's
learnt baseline: the upper tail P(K >= k) of a beta-binomial whose Beta(a, b) holds
the baseline negative share and its spread between windows. The same thresholds then
mean the same thing for a 5-minute window of hundreds of items and a daily window of
four. Scoring (`negative_surge_evidence`, `log_upper_tail`) is kept apart from the
state and thresholds (`EvidenceDetector`), so backtests can score without a detector.
See NOTES.md for the maths and the choice of defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from processors.detection.base import Assessment, Detector, fading
from processors.envelope.message import TopicWindow

_LN10 = math.log(10.0)
# Stop summing the tail once what is left is provably below this share of the sum.
_TAIL_RTOL = 1e-16


def _log_pmf(j: int, n: int, a: float, b: float) -> float:
    """log P(K = j) for K ~ BetaBinomial(n, a, b)."""
    return (
        math.lgamma(n + 1)
        - math.lgamma(j + 1)
        - math.lgamma(n - j + 1)
        + math.lgamma(j + a)
        + math.lgamma(n - j + b)
        - math.lgamma(n + a + b)
        + math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
    )


def log_upper_tail(k: int, n: int, a: float, b: float) -> float:
    """Natural log of P(K >= k) for K ~ BetaBinomial(n, a, b); never underflows.

    Sums the pmf from k upwards in log space, each term from the last by the exact
    ratio P(j+1)/P(j) = (n-j)(j+a) / ((j+1)(n-j-1+b)), so only one pmf needs lgamma.
    It stops early once the remaining terms are bounded by a geometric series below
    1e-16 of the sum; that bound holds whenever b >= 1 (else it sums to n).
    """
    if a <= 0.0 or b <= 0.0:
        raise ValueError(f"Beta parameters must be positive, got a={a}, b={b}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    log_term = _log_pmf(k, n, a, b)
    top = log_term  # running log-sum-exp: sum = exp(top) * total
    total = 1.0
    for j in range(k, n):
        f1 = (n - j) / (n - j - 1 + b)  # non-increasing in j when b >= 1
        f2 = (j + a) / (j + 1)  # non-increasing in j when a >= 1, and < 1 when a < 1
        log_term += math.log(f1 * f2)
        if log_term > top:
            total = total * math.exp(top - log_term) + 1.0
            top = log_term
        else:
            total += math.exp(log_term - top)
        if b >= 1.0:
            bound = f1 * (f2 if a >= 1.0 else 1.0)  # bounds every later ratio
            if bound < 1.0:
                rest = math.exp(log_term - top) * bound / (1.0 - bound)
                if rest < _TAIL_RTOL * total:
                    break
    return min(0.0, top + math.log(total))


def negative_surge_evidence(k: int, n: int, a: float, b: float) -> float:
    """Tail probability P(K >= k) of k negatives in n under a Beta(a, b) baseline share.

    Small means strong evidence of a surge. Pure: no state, no thresholds.

    >>> round(negative_surge_evidence(3, 4, 1.5, 8.5), 4)
    0.0294
    >>> negative_surge_evidence(0, 10, 1.5, 8.5)
    1.0
    """
    return math.exp(log_upper_tail(k, n, a, b))


def beta_from_share(share: float, rho: float) -> tuple[float, float]:
    """Beta(a, b) with mean `share` and intra-window correlation rho = 1 / (a + b + 1).

    rho is the between-window variance of the true share as a fraction of
    share * (1 - share); rho -> 0 is the binomial, rho -> 1 all-or-nothing windows.
    """
    concentration = 1.0 / rho - 1.0
    return share * concentration, (1.0 - share) * concentration


def _window_beta(share: float, rho: float, mean_var: float) -> tuple[float, float, float]:
    """(share, a, b) of one window: the between-window spread plus the baseline's own."""
    return share, *beta_from_share(share, min(rho + mean_var, 0.5))


def p_fire_for_rate(false_alarms_per_day: float, window: timedelta) -> float:
    """The per-window p_fire that gives about `false_alarms_per_day` on one key.

    Only as honest as the model: discreteness makes thin windows fire less often
    than this, unmodelled drift more often; check with `sweep` on real counts.
    """
    windows_per_day = timedelta(days=1) / window
    return min(1.0, false_alarms_per_day / windows_per_day)


@dataclass
class EvidenceDetector(Detector):
    """Fires when a window's negative count is too unlikely under the key's baseline.

    A window fires when its tail probability p = P(K >= k) is below `p_fire`, its
    share is at least `min_lift` above the baseline share (so huge windows do not fire
    on trivial shifts), and the key has seen `warmup_items` (decayed) items.
    It recovers when p > `p_resolve` or its share is within `resolve_lift` of the
    baseline. The score is -log10(p). Empty windows are neither abnormal nor
    recovered (silence is no evidence either way) and are not learnt from.

    The baseline is pooled: exponentially decayed sums of negatives and items, with
    a Beta prior of `prior_items` items at `prior_share` added in, so a new key is
    sensible at once and many thin windows make a steady mean. Evidence decays with
    event time (half-life `half_life_seconds`), not per window, so thin and thick streams
    forget at the same pace and a feed that stops drifts back to the prior. The
    between-window spread rho is a method-of-moments estimate from the same sums,
    shrunk to `prior_rho` by `prior_rho_windows` windows' worth of weight and never
    below `min_rho`; the uncertainty of the mean itself is added to it. Windows judged
    abnormal, and windows while firing, are not learnt from. A suspect window (p below
    `p_suspect`, share above the lift) is held back from the baseline until a calm one
    follows, and the next window is also judged together with it: a surge split across
    a window boundary is seen whole, and cannot teach itself as the normal meanwhile.

    >>> from datetime import datetime, timedelta
    >>> def window(n, neg, day):
    ...     start = datetime(2024, 1, 1) + timedelta(days=day)
    ...     return TopicWindow("energy_oil", start, start + timedelta(days=1), n, neg,
    ...                        0, n - neg, neg / n if n else 0.0, 0.0)
    >>> d = EvidenceDetector()
    >>> [d.update(window(8, 1, day), False).abnormal for day in range(6)]
    [False, False, False, False, False, False]
    >>> verdict = d.update(window(11, 9, 6), False)
    >>> verdict.abnormal, round(verdict.baseline, 2), verdict.score > 4
    (True, 0.13, True)
    >>> d.update(window(4, 3, 7), False).abnormal
    False
    """

    score_name: ClassVar[str] = "-log10 p"

    p_fire: float = 1e-4
    p_resolve: float = 0.05
    p_suspect: float = 0.01
    min_lift: float = 0.15
    resolve_lift: float = 0.05
    prior_share: float = 0.15
    prior_items: float = 10.0
    prior_rho: float = 0.02
    prior_rho_windows: float = 5.0
    min_rho: float = 0.005
    half_life_seconds: float = 14 * 86_400.0
    warmup_items: float = 10.0  # as much as the prior weighs: the baseline rests half on data

    # Decayed sums over learnt windows, each window weighted by w = its decay factor.
    negatives: float = 0.0  # sum w * k
    items: float = 0.0  # sum w * n
    windows: float = 0.0  # sum w
    square: float = 0.0  # sum w * k^2 / n, for the between-window variance
    items_sq_weight: float = 0.0  # sum w^2 * n, for the variance of the pooled mean
    items2_sq_weight: float = 0.0  # sum w^2 * n^2, likewise under overdispersion
    rho_info: float = 0.0  # sum w * (n-1)/(n-1+1/prior_rho): windows' info on rho
    last_end: datetime | None = field(default=None)
    # (negatives, items) of the suspect windows just before, held back from the baseline.
    held: list[tuple[int, int]] = field(default_factory=list)
    held_since: datetime | None = None  # the start of the first held window
    seen: float = 0.0  # items of every non-empty window judged (decayed), for the warm-up

    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        self._age(window.end)
        _, rho, mean_var = spread = self.spread()
        share_base, a, b = _window_beta(*spread)
        n = window.n
        if n <= 0:
            return Assessment(abnormal=False, recovered=False, baseline=share_base, score=0.0)
        k = min(max(window.n_negative, 0), n)
        log_p = own_log_p = log_upper_tail(k, n, a, b)
        share = own_share = k / n
        since = run_counts = None  # where the evidence begins, when a held run gave it
        if self.held:
            # A surge across window boundaries: judge the run of held windows with this
            # one. Each window draws its own share, so the spread between windows counts
            # only within each: rho is diluted by the run's pairs of items that share one.
            run_k = k + sum(hk for hk, _ in self.held)
            run_n = n + sum(hn for _, hn in self.held)
            pairs = n * (n - 1) + sum(hn * (hn - 1) for _, hn in self.held)
            run_rho = min(rho * pairs / (run_n * (run_n - 1)) + mean_var, 0.5)
            log_run = log_upper_tail(run_k, run_n, *beta_from_share(share_base, run_rho))
            if log_run < log_p:
                log_p, share, since = log_run, run_k / run_n, self.held_since
                run_counts = (run_k, run_n)
        lifted = share >= share_base + self.min_lift
        # Warm-up counts every item seen, surges too: the baseline's own uncertainty is
        # in the tail already; this only keeps a key's very first windows from firing.
        abnormal = self.seen >= self.warmup_items and log_p < math.log(self.p_fire) and lifted
        self.seen += n
        recovered = log_p > math.log(self.p_resolve) or share <= share_base + self.resolve_lift
        if abnormal or firing:
            self.held, self.held_since = [], None  # a surge: none of it is normal
        elif self._suspect(own_log_p, own_share, share_base) or (
            self.held and own_share > share_base
        ):
            # Suspect, not yet evidence: hold it back from the baseline, and let the
            # next window add to it, so a surge cannot teach itself as the normal. A run
            # goes on while its windows, each on its own, stay above the baseline: the
            # run's evidence must not hold calm windows back, or a run that never fires
            # would stop the key learning for good.
            if not self.held:
                self.held_since = window.start
            self.held.append((k, n))
        else:
            for held_k, held_n in self.held:
                self._learn(held_k, held_n)
            self.held, self.held_since = [], None
            self._learn(k, n)
        return Assessment(
            abnormal=abnormal,
            recovered=recovered,
            baseline=share_base,
            score=-log_p / _LN10,
            since=since,
            run_counts=run_counts,
        )

    def _suspect(self, log_p: float, share: float, baseline: float) -> bool:
        """Whether one window on its own is suspect: unlikely and lifted, not yet evidence."""
        return log_p < math.log(self.p_suspect) and share >= baseline + self.min_lift

    def share(self) -> float:
        """The baseline negative share: pooled counts shrunk to the prior."""
        return (self.negatives + self.prior_items * self.prior_share) / (
            self.items + self.prior_items
        )

    def rho(self) -> float:
        """Between-window spread of the true share, as intra-window correlation."""
        raw = self.prior_rho
        excess = self.items - self.windows  # sum w * (n - 1)
        if excess > 1e-9 and self.rho_info > 0.0:
            mean = self.share()
            spread = max(self.square - self.negatives**2 / self.items, 0.0)
            # Under binomial noise alone, E[spread] = pq * (windows - items_sq/items).
            dof = self.windows - self.items_sq_weight / self.items
            raw = (spread / (mean * (1.0 - mean)) - dof) / excess
        weight = self.prior_rho_windows
        shrunk = (weight * self.prior_rho + self.rho_info * raw) / (weight + self.rho_info)
        return max(self.min_rho, shrunk)

    def beta(self) -> tuple[float, float, float]:
        """(share, a, b): the Beta a new window's true share is drawn from."""
        return _window_beta(*self.spread())

    def spread(self) -> tuple[float, float, float]:
        """(share, rho, mean_var): the baseline, the between-window spread, and the
        variance of the pooled mean itself over p(1-p) (the baseline is uncertain too)."""
        share = self.share()
        rho = self.rho()
        pooled = self.items + self.prior_items
        mean_var = (
            self.prior_items
            + self.items_sq_weight
            + rho * (self.items2_sq_weight - self.items_sq_weight)
        ) / pooled**2
        return share, rho, mean_var

    def _age(self, end: datetime) -> None:
        """Decay the sums by the event time since the last window (never backwards)."""
        decay = fading(self.last_end, end, self.half_life_seconds)
        self.last_end = max(self.last_end or end, end)
        if decay == 1.0:
            return
        self.negatives *= decay
        self.items *= decay
        self.seen *= decay
        self.windows *= decay
        self.square *= decay
        self.rho_info *= decay
        self.items_sq_weight *= decay * decay
        self.items2_sq_weight *= decay * decay

    def _learn(self, k: int, n: int) -> None:
        self.negatives += k
        self.items += n
        self.windows += 1.0
        self.square += k * k / n
        self.items_sq_weight += n
        self.items2_sq_weight += n * n
        self.rho_info += (n - 1) / (n - 1 + 1.0 / self.prior_rho)


# --- Calibration for the backtest ------------------------------------------------


@dataclass(frozen=True)
class CalibrationPoint:
    """How one p_fire behaves on one key's history."""

    p_fire: float
    windows: int  # windows with at least one item
    abnormal: int  # windows judged abnormal
    alerts: int  # alerts started (TopicMonitor's lifecycle: one per surge)

    @property
    def fire_rate(self) -> float:
        """Share of non-empty windows judged abnormal."""
        return self.abnormal / self.windows if self.windows else 0.0


def sweep(
    counts: Iterable[tuple[int, int]],
    p_fires: Sequence[float],
    window: timedelta = timedelta(days=1),
    detector: EvidenceDetector | None = None,
) -> list[CalibrationPoint]:
    """Replay one key's (k, n) counts per window, oldest first, at each p_fire.

    Windows are consecutive, `window` long; the alert lifecycle is replayed too
    (no learning while firing, recovery by the detector's own rule), as in production.
    `detector` gives the other parameters; it is copied, never changed.
    """
    history = list(counts)
    template = detector or EvidenceDetector()
    points = []
    for p_fire in p_fires:
        d = replace(template, p_fire=p_fire)
        firing = False
        windows = abnormal = alerts = 0
        start = datetime(2000, 1, 1, tzinfo=UTC)
        for k, n in history:
            w = _window(k, n, start, start + window)
            start += window
            verdict = d.update(w, firing)
            windows += n > 0
            abnormal += verdict.abnormal
            if not firing and verdict.abnormal:
                firing, alerts = True, alerts + 1
            elif firing and verdict.recovered:
                firing = False
        points.append(CalibrationPoint(p_fire, windows, abnormal, alerts))
    return points


def _window(k: int, n: int, start: datetime, end: datetime) -> TopicWindow:
    share = k / n if n else 0.0
    return TopicWindow("calibration", start, end, n, k, n - k, 0, share, -share)

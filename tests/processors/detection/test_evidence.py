"""Tests of the beta-binomial surge evidence and of EvidenceDetector."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest

from processors.detection.evidence import (
    EvidenceDetector,
    beta_from_share,
    log_upper_tail,
    negative_surge_evidence,
    p_fire_for_rate,
    sweep,
)
from processors.detection.lifecycle import TopicMonitor
from processors.envelope.message import TopicWindow

DAY = timedelta(days=1)
FIVE_MINUTES = timedelta(minutes=5)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def window(k: int, n: int, i: int, length: timedelta = DAY) -> TopicWindow:
    start = T0 + length * i
    share = k / n if n else 0.0
    return TopicWindow("energy_oil", start, start + length, n, k, 0, n - k, share, -share)


# --- Brute force references -------------------------------------------------------


def exact_tail(k: int, n: int, a: int, b: int) -> Fraction:
    """P(K >= k) in exact rationals, for integer a and b."""

    def beta(x: int, y: int) -> Fraction:
        return Fraction(math.factorial(x - 1) * math.factorial(y - 1), math.factorial(x + y - 1))

    return sum(
        (math.comb(n, j) * beta(j + a, n - j + b) / beta(a, b) for j in range(k, n + 1)),
        Fraction(0),
    )


def product_pmf(j: int, n: int, a: float, b: float) -> float:
    """The pmf as rising factorials, with no lgamma: an independent route."""
    value = float(math.comb(n, j))
    for i in range(j):
        value *= a + i
    for i in range(n - j):
        value *= b + i
    for i in range(n):
        value /= a + b + i
    return value


def full_log_tail(k: int, n: int, a: float, b: float) -> float:
    """log P(K >= k) by summing every term's lgamma pmf with log-sum-exp."""
    j = np.arange(k, n + 1)
    lg = np.vectorize(math.lgamma)
    logs = (
        lg(n + 1) - lg(j + 1) - lg(n - j + 1) + lg(j + a) + lg(n - j + b) - lg(n + a + b)
        + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    )  # fmt: skip
    top = logs.max()
    return float(top + math.log(np.exp(logs - top).sum()))


def binomial_log_tail(k: int, n: int, p: float) -> float:
    j = np.arange(k, n + 1)
    lg = np.vectorize(math.lgamma)
    logs = lg(n + 1) - lg(j + 1) - lg(n - j + 1) + j * math.log(p) + (n - j) * math.log1p(-p)
    top = logs.max()
    return float(top + math.log(np.exp(logs - top).sum()))


# --- The pure tail ----------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(1, 1), (2, 9), (3, 17), (1, 30), (5, 2)])
def test_tail_matches_exact_rationals(a: int, b: int) -> None:
    for n in range(13):
        for k in range(n + 2):
            expected = float(exact_tail(k, n, a, b)) if k <= n else 0.0
            assert negative_surge_evidence(k, n, a, b) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize(("a", "b"), [(0.3, 0.7), (0.2, 5.0), (4.8, 0.6), (1.5, 8.5), (7.4, 39.1)])
def test_tail_matches_products_for_any_shape(a: float, b: float) -> None:
    """U-, J- and bell-shaped pmfs alike: the early stop must not cut real mass."""
    for n in (1, 7, 30):
        pmf = [product_pmf(j, n, a, b) for j in range(n + 1)]
        assert sum(pmf) == pytest.approx(1.0, rel=1e-12)
        for k in range(n + 1):
            expected = sum(pmf[k:])
            assert negative_surge_evidence(k, n, a, b) == pytest.approx(expected, rel=1e-10)


def test_tail_edges() -> None:
    assert negative_surge_evidence(0, 10, 2.0, 8.0) == 1.0
    assert negative_surge_evidence(-3, 10, 2.0, 8.0) == 1.0
    assert negative_surge_evidence(0, 0, 2.0, 8.0) == 1.0
    assert negative_surge_evidence(11, 10, 2.0, 8.0) == 0.0
    assert log_upper_tail(11, 10, 2.0, 8.0) == -math.inf
    with pytest.raises(ValueError):
        negative_surge_evidence(1, 10, 0.0, 8.0)
    with pytest.raises(ValueError):
        negative_surge_evidence(1, -1, 2.0, 8.0)


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (9, 11, 0.15),
        (30, 40, 0.15),
        (3, 4, 0.15),
        (700, 4000, 0.15),
        (60, 400, 0.15),
        (5, 50, 0.01),
    ],
)
def test_tail_tends_to_the_binomial(k: int, n: int, p: float) -> None:
    """Overdispersion -> 0 (a + b -> infinity) is the binomial."""
    if n <= 1000:
        exact = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
        assert negative_surge_evidence(k, n, *beta_from_share(p, 1e-9)) == pytest.approx(
            exact, rel=1e-4
        )
    assert log_upper_tail(k, n, *beta_from_share(p, 1e-9)) == pytest.approx(
        binomial_log_tail(k, n, p), rel=1e-4, abs=1e-5
    )
    # More overdispersion only fattens an upper tail above the mean.
    if k > n * p + 1:
        assert log_upper_tail(k, n, *beta_from_share(p, 0.05)) > binomial_log_tail(k, n, p)


@pytest.mark.parametrize("rho", [0.005, 0.05, 1e-7])
@pytest.mark.parametrize("k", [1, 14000, 15000, 16000, 20000, 90000, 100000])
def test_tail_for_large_n_agrees_with_full_sum(rho: float, k: int) -> None:
    n = 100_000
    a, b = beta_from_share(0.15, rho)
    got = log_upper_tail(k, n, a, b)
    assert math.isfinite(got) and got <= 0.0
    # The reference sums 1e5 lgamma terms, each good to ~1e-9 at these sizes.
    assert got == pytest.approx(full_log_tail(k, n, a, b), rel=1e-7, abs=1e-7)


def test_tail_for_large_n_is_monotone() -> None:
    n = 100_000
    a, b = beta_from_share(0.15, 0.005)
    logs = [log_upper_tail(k, n, a, b) for k in range(0, n + 1, 5000)]
    assert all(x >= y for x, y in itertools.pairwise(logs))
    # The far tail underflows as a probability, never as a log.
    a, b = beta_from_share(0.15, 1e-7)
    assert negative_surge_evidence(30_000, n, a, b) == 0.0
    assert -log_upper_tail(30_000, n, a, b) / math.log(10) > 1000


# --- The detector -----------------------------------------------------------------


def learnt(thick: bool, share: float = 0.15, seed: int = 7) -> tuple[EvidenceDetector, int]:
    """A detector that has learnt a usual `share` from a thin daily or thick 5-min feed."""
    rng = np.random.default_rng(seed)
    d = EvidenceDetector()
    count, low, high, length = (2000, 200, 500, FIVE_MINUTES) if thick else (90, 2, 35, DAY)
    for i in range(count):
        n = int(rng.integers(low, high + 1))
        verdict = d.update(window(int(rng.binomial(n, share)), n, i, length), False)
        assert not verdict.abnormal
    return d, count


CASES = [(9, 11, True), (3, 4, False), (30, 40, True), (8, 40, False), (60, 400, False)]


@pytest.mark.parametrize("thick", [False, True], ids=["daily-thin", "5min-thick"])
@pytest.mark.parametrize(("k", "n", "fires"), CASES)
def test_required_cases_against_a_usual_15_percent(k: int, n: int, fires: bool, thick: bool):
    d, i = learnt(thick)
    assert d.share() == pytest.approx(0.15, abs=0.03)
    length = FIVE_MINUTES if thick else DAY
    verdict = d.update(window(k, n, i, length), False)
    assert verdict.abnormal is fires
    assert verdict.baseline == pytest.approx(0.15, abs=0.03)
    if fires:
        assert verdict.score > 4 and not verdict.recovered


@pytest.mark.parametrize(("k", "n", "fires"), CASES)
def test_required_cases_as_pure_tail_probabilities(k: int, n: int, fires: bool) -> None:
    """Against a well-known 15% with the prior spread (rho = 0.02)."""
    p = negative_surge_evidence(k, n, *beta_from_share(0.15, 0.02))
    assert (p < 1e-4) is fires


def test_score_is_minus_log10_p() -> None:
    d, i = learnt(False)
    verdict = copy.deepcopy(d).update(window(9, 11, i), False)
    d._age(window(9, 11, i).end)  # what update does first
    _, a, b = d.beta()
    p = negative_surge_evidence(9, 11, a, b)
    assert verdict.score == pytest.approx(-math.log10(p), rel=1e-9)


def test_new_key_starts_from_the_prior_and_warms_up_on_items_not_windows() -> None:
    d = EvidenceDetector()
    first = d.update(window(11, 11, 0), False)
    assert first.baseline == pytest.approx(0.15)
    assert not first.abnormal  # no evidence learnt yet
    # Ten one-item windows are ten items: still below the 20-item warm-up.
    d = EvidenceDetector()
    for i in range(10):
        d.update(window(0, 1, i), False)
    assert not d.update(window(11, 11, 10), False).abnormal
    # One thick window is enough evidence.
    d = EvidenceDetector()
    d.update(window(45, 300, 0, FIVE_MINUTES), False)
    assert d.update(window(9, 11, 1, FIVE_MINUTES), False).abnormal


def test_empty_windows_never_fire_never_learn_never_resolve() -> None:
    d, i = learnt(False)
    before = copy.deepcopy(d)
    verdict = d.update(window(0, 0, i), False)
    assert verdict == type(verdict)(False, False, verdict.baseline, 0.0)
    assert d.items == pytest.approx(before.items * 0.5 ** (1 / 14))  # it only aged
    assert not d.update(window(0, 0, i + 1), True).recovered


def test_abnormal_and_firing_windows_are_not_learnt() -> None:
    d, i = learnt(False)
    before = copy.deepcopy(d)
    assert d.update(window(30, 40, i), False).abnormal
    assert d.negatives == pytest.approx(before.negatives * 0.5 ** (1 / 14))
    state = copy.deepcopy(d)
    d.update(window(4, 40, i + 1), True)  # calm, but an alert is firing
    assert d.negatives == pytest.approx(state.negatives * 0.5 ** (1 / 14))
    # A long surge stays a surge: the baseline does not climb towards it (it only
    # relaxes towards the prior as its evidence ages).
    for j in range(i + 2, i + 32):
        assert d.update(window(30, 40, j), True).abnormal
    assert d.share() <= max(before.share(), d.prior_share) + 1e-12


def test_hysteresis() -> None:
    d, i = learnt(False)
    between = copy.deepcopy(d).update(window(6, 11, i), True)  # p ~ 0.005: not calm
    assert not between.abnormal and not between.recovered
    assert copy.deepcopy(d).update(window(2, 11, i), True).recovered  # share near baseline
    assert copy.deepcopy(d).update(window(3, 4, i), True).recovered is False
    assert copy.deepcopy(d).update(window(1, 2, i), True).recovered  # p > 0.05: thin


def test_many_thin_windows_make_a_steady_baseline() -> None:
    rng = np.random.default_rng(3)
    d = EvidenceDetector()
    fired = 0
    shares, raw = [], []
    for i in range(400):
        n = int(rng.integers(0, 5))  # 0 to 4 items a day
        k = int(rng.binomial(n, 0.3))
        fired += d.update(window(k, n, i), False).abnormal
        shares.append(d.share())
        if n:
            raw.append(k / n)
    assert fired == 0
    assert d.items > d.warmup_items
    # Pooled, the baseline is steady although each window's share is 0, 1/4, 1/2, ...
    late = np.array(shares[100:])
    assert late.mean() == pytest.approx(0.3, abs=0.07)  # a little shrunk to the prior
    assert late.std() < 0.06
    assert late.std() < np.std(raw) / 4


def test_huge_windows_do_not_fire_on_trivial_shifts() -> None:
    d, i = learnt(True)
    d.min_rho = 1e-6  # a key (nearly) as steady as a binomial: only the lift floor is left
    verdict = d.update(window(17_000, 100_000, i, FIVE_MINUTES), False)
    assert verdict.score > 10  # overwhelming evidence of a small shift...
    assert not verdict.abnormal  # ...which is not material


def test_a_volatile_key_does_not_fire_on_its_own_noise() -> None:
    rng = np.random.default_rng(11)
    volatile, calm = EvidenceDetector(), EvidenceDetector()
    a, b = beta_from_share(0.15, 0.1)
    fired = 0
    for i in range(3000):
        n = int(rng.integers(200, 500))
        fired += volatile.update(
            window(int(rng.binomial(n, rng.beta(a, b))), n, i, FIVE_MINUTES), False
        ).abnormal
        calm.update(window(int(rng.binomial(n, 0.15)), n, i, FIVE_MINUTES), False)
    assert volatile.rho() == pytest.approx(0.1, rel=0.25)
    assert calm.rho() == calm.min_rho  # the floor
    assert fired <= 3  # about p_fire * 3000 expected
    surge = window(140, 400, 3000, FIVE_MINUTES)  # 35%: under 2 natural sds on the volatile key
    assert not volatile.update(surge, False).abnormal
    assert calm.update(surge, False).abnormal


@pytest.mark.parametrize(("length", "low", "high"), [(DAY, 2, 35), (FIVE_MINUTES, 100, 500)])
def test_false_alarm_rate_on_null_streams(length: timedelta, low: int, high: int) -> None:
    rng = np.random.default_rng(5)
    d = EvidenceDetector()
    fired = 0
    for i in range(5000):
        n = int(rng.integers(low, high + 1))
        fired += d.update(window(int(rng.binomial(n, 0.15)), n, i, length), False).abnormal
    assert fired <= 3


def test_evidence_decays_with_event_time_and_feeds_can_stop() -> None:
    d, i = learnt(False)
    items = d.items
    # Four weeks of silence: two half-lives, whatever the window length.
    d.update(window(0, 0, i + 27), False)
    assert d.items == pytest.approx(items * 0.25, rel=1e-9)
    # Half a year off: the evidence is gone, the prior is back, warm-up again.
    d.update(window(0, 0, i + 200), False)
    assert d.items < d.warmup_items
    assert d.share() == pytest.approx(0.15, abs=0.01)
    assert not d.update(window(11, 11, i + 201), False).abnormal
    # A late, out-of-order window does not move time backwards or break anything.
    last = d.last_end
    d.update(window(1, 10, i), False)
    assert d.last_end == last


def test_thin_and_thick_streams_forget_alike() -> None:
    """One day of items counts the same in one window or in 288.

    Not exactly: items spread over the day are on average half a day older.
    """
    one, many = EvidenceDetector(), EvidenceDetector()
    one.update(window(14, 288, 0), False)
    for j in range(288):
        many.update(window(j % 20 == 0, 1, j, FIVE_MINUTES), False)
    for d in (one, many):
        d.update(window(0, 0, 30), False)
    assert many.items == pytest.approx(one.items * 0.5 ** (0.5 / 14), rel=0.002)


def test_picklable_state() -> None:
    d, i = learnt(False)
    clone = pickle.loads(pickle.dumps(d))
    assert clone == d
    assert clone.update(window(9, 11, i), False) == d.update(window(9, 11, i), False)


def test_with_the_alert_lifecycle() -> None:
    d, i = learnt(False)
    monitor = TopicMonitor(d)
    counts = [(9, 11), (8, 10), (6, 11), (1, 9), (2, 12)]
    verdicts = (monitor.update(window(k, n, i + j)) for j, (k, n) in enumerate(counts))
    events = [e.status for batch in verdicts for e in batch]
    assert events == ["firing", "resolved"]


def test_sweep_and_p_fire_for_rate() -> None:
    rng = np.random.default_rng(2)
    calm = [(int(rng.binomial(n, 0.15)), int(n)) for n in rng.integers(2, 35, size=200)]
    history = [*calm[:100], (9, 11), (10, 12), (2, 10), *calm[100:]]
    points = sweep(history, [1e-6, 1e-4, 1e-2])
    assert [p.windows for p in points] == [203, 203, 203]
    rates = [p.fire_rate for p in points]
    assert rates == sorted(rates)
    assert points[1].alerts == 1 and points[1].abnormal >= 1
    assert sweep([(0, 0)] * 3, [1e-4])[0].fire_rate == 0.0
    assert p_fire_for_rate(1 / 30, FIVE_MINUTES) == pytest.approx(1 / 30 / 288)


def test_an_alert_on_a_held_run_starts_where_the_run_began() -> None:
    """Day 30 is suspect but not evidence; day 31 makes the run evidence: the surge
    began on day 30, and the alert says so."""
    from datetime import datetime, timedelta

    from processors.detection import TopicMonitor
    from processors.envelope.message import TopicWindow

    def day(k: int, d: int) -> TopicWindow:
        start = datetime(2024, 1, 1) + timedelta(days=d)
        return TopicWindow("macro", start, start + timedelta(days=1), 50, k, 50 - k, 0, k / 50, 0.0)

    monitor = TopicMonitor(EvidenceDetector(p_fire=1e-4))
    for d in range(30):
        assert monitor.update(day(5, d)) == []
    assert monitor.update(day(13, 30)) == []
    (alert,) = monitor.update(day(14, 31))
    assert alert.status == "firing"
    assert alert.starts_at == datetime(2024, 1, 31) and alert.window.start == datetime(2024, 2, 1)
    # Told by the whole run, not by its last window alone.
    assert alert.annotations["description"].startswith(
        "27 of 100 items on macro were negative (27%) from 2024-01-31 00:00 to 2024-02-02 00:00 UTC"
    )


def test_a_calm_window_ends_a_held_run_and_is_learnt() -> None:
    """A run that never becomes evidence ends at the first window at or below the
    baseline, and its windows are learnt: the key does not stop learning."""
    d, i = learnt(False)
    assert not d.update(window(10, 20, i), False).abnormal  # suspect: held
    assert d.held
    items = d.items
    # Calm on its own, though the run of both (10 of 22) is still suspect.
    verdict = d.update(window(0, 2, i + 1), False)
    assert not verdict.abnormal and verdict.score > 2
    assert d.held == [] and d.items > items

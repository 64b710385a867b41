"""Negative-share surge detection against an EWMA baseline, aware of sample size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from processors.detection.base import Assessment, Detector
from processors.envelope.message import TopicWindow


@dataclass
class EwmaDetector(Detector):
    """Fires when a window's negative share is far above the topic's usual share.

    The baseline is an exponentially weighted mean and variance of the negative share
    of past windows. A window is judged by a z-score whose variance adds the binomial
    noise of its own size, p(1-p)/n, so a few negative items in a thin window do not
    look like a surge. To fire, a window must also hold `min_count` items and a
    negative share of at least `share_floor`. It recovers once its z-score falls
    below `resolve_z` or its share below `resolve_share` (hysteresis). Windows
    judged abnormal, and windows while firing, are not learnt from, so a long surge
    does not become the new normal.

    >>> from datetime import datetime, timedelta
    >>> def window(n, neg, i):
    ...     start = datetime(2024, 1, 2) + timedelta(minutes=5 * i)
    ...     return TopicWindow("energy_oil", start, start + timedelta(minutes=5), n, neg,
    ...                        n - neg, 0, neg / n, -neg / n)
    >>> d = EwmaDetector()
    >>> [d.update(window(40, 4, i), False).abnormal for i in range(5)]
    [False, False, False, False, False]
    >>> d.update(window(40, 30, 5), False).abnormal
    True
    """

    alpha: float = 0.2
    z_threshold: float = 3.0
    share_floor: float = 0.4
    min_count: int = 20
    warmup_windows: int = 3
    resolve_z: float = 1.5
    resolve_share: float = 0.3
    prior_share: float = 0.15
    min_std: float = 0.05

    mean: float | None = None
    variance: float = 0.0
    windows_seen: int = 0

    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        share = window.negative_share
        baseline = self.prior_share if self.mean is None else self.mean
        z = self._z(share, window.n, baseline)
        abnormal = (
            self.windows_seen >= self.warmup_windows
            and window.n >= self.min_count
            and share >= self.share_floor
            and z >= self.z_threshold
        )
        recovered = z < self.resolve_z or share < self.resolve_share
        if not abnormal and not firing:
            self._learn(share, window.n)
        return Assessment(abnormal=abnormal, recovered=recovered, baseline=baseline, score=z)

    def _z(self, share: float, n: int, baseline: float) -> float:
        sampling = baseline * (1.0 - baseline) / max(n, 1)
        std = math.sqrt(self.variance + sampling + self.min_std**2)
        return (share - baseline) / std

    def _learn(self, share: float, n: int) -> None:
        self.windows_seen += 1
        if self.mean is None:
            self.mean = share
            return
        # Thin windows teach less: their share is mostly sampling noise.
        alpha = self.alpha * min(1.0, n / self.min_count)
        delta = share - self.mean
        self.mean += alpha * delta
        self.variance = (1.0 - alpha) * (self.variance + alpha * delta * delta)

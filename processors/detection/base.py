"""The detector contract: learn one topic's normal, judge each window against it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from processors.envelope.message import TopicWindow


@dataclass(frozen=True)
class Assessment:
    """A detector's verdict on one window.

    `abnormal` says the window should start an alert; `recovered` says an alert that
    is firing may end. They are separate so detectors can apply hysteresis: a window
    can be neither (not bad enough to start, not calm enough to end).
    """

    abnormal: bool
    recovered: bool
    baseline: float  # the normal value the window was compared with
    score: float  # how far off normal, in the detector's own unit (its `score_name`)
    # Where the evidence begins when it spans earlier windows too (a surge that built up
    # over several): the alert starts there. None: at this window.
    since: datetime | None = None
    # With `since`: the (negative, all) counts of that whole run, which the alert's text
    # gives instead of the last window's alone.
    run_counts: tuple[int, int] | None = None
    # What in the window the verdict is about, when a detector judges parts of it (the
    # word of a story burst); empty: the window as a whole.
    subject: str = ""


class Detector(ABC):
    """Stateful per topic and picklable: it is Bytewax state, so keep it small."""

    score_name: ClassVar[str] = "z"  # what `Assessment.score` is, for alert texts

    @abstractmethod
    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        """Judge `window`, then learn from it; `firing` says an alert is active."""


# Detectors that keep many decayed sums store them times a growing scale, so that ageing
# them is one multiplication, and bring them back to true sums once it reaches this.
REBASE_SCALE = 16.0


def fading(last_end: datetime | None, end: datetime, half_life_seconds: float) -> float:
    """The factor by which a detector's decayed sums fade from its last window's end to
    `end`: a half per half-life of event time; 1.0 when event time has not moved on (a
    first window, or one that ends no later), so evidence never grows back."""
    if last_end is None or end <= last_end:
        return 1.0
    return 0.5 ** ((end - last_end) / timedelta(seconds=half_life_seconds))

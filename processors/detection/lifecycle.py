"""The alert lifecycle of one key: firing once, resolved once, never repeated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from processors.detection.base import Detector
from processors.envelope.message import NO_END, AlertEvent, TopicWindow
from processors.stream.window import MARKET, entity_of

ALERTNAME = "NegativeSentimentSurge"
VOLUME_ALERTNAME = "NewsVolumeSpike"
BURST_ALERTNAME = "NegativeStoryBurst"
ALERTNAMES: tuple[str, ...] = (ALERTNAME, VOLUME_ALERTNAME, BURST_ALERTNAME)


def fingerprint(alertname: str, key: str) -> str:
    """Stable per (alertname, key), as Alertmanager's fingerprints are per label set:
    the key's label is `topic`, or `entity` for an entity's key."""
    label, value = key_label(key)
    return hashlib.sha256(f"alertname={alertname}\x00{label}={value}".encode()).hexdigest()[:16]


def key_label(key: str) -> tuple[str, str]:
    """The alert label that names a window key: ("entity", "BA") or ("topic", key)."""
    ticker = entity_of(key)
    return ("topic", key) if ticker is None else ("entity", ticker)


def story_view(window: TopicWindow) -> TopicWindow:
    """The window as its detectors judge it: in distinct stories, so that one story
    reprinted sixty times is one story, not a surge (windows without story counts, as
    written before stories existed, stay in items).

    >>> from datetime import datetime
    >>> w = TopicWindow("energy_oil", datetime(2024, 1, 2), datetime(2024, 1, 3), 64, 61, 3,
    ...                 0, 61 / 64, -0.9, n_stories=5, n_negative_stories=2)
    >>> view = story_view(w)
    >>> view.n, view.n_negative, view.negative_share
    (5, 2, 0.4)
    """
    if window.n_stories <= 0:
        return window
    return msgspec.structs.replace(
        window,
        n=window.n_stories,
        n_negative=window.n_negative_stories,
        n_neutral=window.n_stories - window.n_negative_stories,
        n_positive=0,
        negative_share=window.n_negative_stories / window.n_stories,
    )


def without_leading_topic(window: TopicWindow) -> TopicWindow:
    """The window less its topic with the most negative items.

    The market-wide key is for surges spread over many topics: one topic's surge, which
    that topic's own key judges, must not make the whole market look abnormal too.

    >>> from datetime import datetime
    >>> w = TopicWindow("all", datetime(2024, 1, 2), datetime(2024, 1, 3), 100, 40, 50, 10,
    ...                 0.4, -0.3, leading_topic="energy_oil", leading_n=30, leading_negative=25)
    >>> broad = without_leading_topic(w)
    >>> broad.n, broad.n_negative, round(broad.negative_share, 3)
    (70, 15, 0.214)
    """
    with_sentiment = window.n_negative + window.n_neutral + window.n_positive - window.leading_n
    negative = window.n_negative - window.leading_negative
    return msgspec.structs.replace(
        window,
        n=window.n - window.leading_n,
        n_negative=negative,
        negative_share=negative / with_sentiment if with_sentiment > 0 else 0.0,
    )


@dataclass
class TopicMonitor:
    """A key's detector plus the alert it may have open; Bytewax state per key.

    `alertname` says what the detector looks for: a surge of negative news
    (`ALERTNAME`), of news volume (`VOLUME_ALERTNAME`) or of negative stories that
    share a word (`BURST_ALERTNAME`); the alert texts follow it. An alert's window
    keeps, of the market-wide key's words, only the one a burst is about.

    >>> from datetime import datetime, timedelta
    >>> from processors.detection import EwmaDetector
    >>> def window(neg, i):
    ...     start = datetime(2024, 1, 2) + timedelta(minutes=5 * i)
    ...     return TopicWindow("energy_oil", start, start + timedelta(minutes=5), 40, neg,
    ...                        40 - neg, 0, neg / 40, -neg / 40)
    >>> monitor = TopicMonitor(EwmaDetector())
    >>> shares = [4, 4, 4, 4, 30, 32, 4, 4]
    >>> [e.status for i, s in enumerate(shares) for e in monitor.update(window(s, i))]
    ['firing', 'resolved']
    """

    detector: Detector
    critical_share: float = 0.7
    broad: bool = False  # the market-wide key: judge windows without their leading topic
    alertname: str = ALERTNAME
    firing: AlertEvent | None = field(default=None)
    # Added to the labels of the alerts it starts (a watched entity's routing labels); a
    # resolved event keeps its firing's, so that both reach the same receivers.
    labels: tuple[tuple[str, str], ...] = ()

    def update(self, window: TopicWindow) -> list[AlertEvent]:
        """Judge a closed window; return the alert events it causes (zero or one)."""
        surge = self.alertname == ALERTNAME
        judged = story_view(window)
        if self.broad and surge:
            judged = without_leading_topic(judged)
        verdict = self.detector.update(judged, firing=self.firing is not None)
        if self.firing is None and verdict.abnormal:
            # A surge judged over a run of windows is told, and graded, by the whole run.
            negative, items = verdict.run_counts or (judged.n_negative, judged.n)
            since = verdict.since or window.start
            critical = surge and negative >= self.critical_share * items
            score = f"{self.detector.score_name} = {verdict.score:.1f}"
            if surge:
                texts = _surge_texts(judged, negative, items, since, verdict.baseline, score)
            elif self.alertname == BURST_ALERTNAME:
                texts = _burst_texts(judged, verdict.subject, negative, verdict.baseline, score)
            else:
                texts = _volume_texts(judged, verdict.baseline, score)
            summary, description = texts
            label, value = key_label(window.topic)
            self.firing = AlertEvent(
                status="firing",
                labels={
                    "alertname": self.alertname,
                    label: value,
                    "severity": "critical" if critical else "warning",
                    **dict(self.labels),
                },
                annotations={"summary": summary, "description": description},
                starts_at=since,
                ends_at=NO_END,
                fingerprint=fingerprint(self.alertname, window.topic),
                window=_with_words(window, verdict.subject),
                baseline_negative_share=round(verdict.baseline, 4) if surge else 0.0,
                score=round(verdict.score, 3),
                score_name=self.detector.score_name,
            )
            return [self.firing]
        if self.firing is not None and verdict.recovered:
            if surge:
                what = f"{judged.negative_share:.0%} negative of "
            elif verdict.subject:
                stories = judged.negative_words.get(verdict.subject, (0, 0))[1]
                what = f'{stories} negative saying "{verdict.subject}" of '
            else:
                what = ""
            resolved = msgspec.structs.replace(
                self.firing,
                status="resolved",
                ends_at=window.start,
                window=_with_words(window, verdict.subject),
                score=round(verdict.score, 3),
                annotations={
                    **self.firing.annotations,
                    "description": (
                        f"{window.topic} is back to normal: {what}{judged.n} {_unit(window)} "
                        f"{_span(window.start, window.end)}."
                    ),
                },
            )
            self.firing = None
            return [resolved]
        return []


def _with_words(window: TopicWindow, subject: str) -> TopicWindow:
    """The window without its words but the one the verdict is about: an alert carries
    its evidence, not the vocabulary of the market's negative news."""
    if not window.negative_words:
        return window
    words = {subject: window.negative_words[subject]} if subject in window.negative_words else {}
    return msgspec.structs.replace(window, negative_words=words)


def _subject(window: TopicWindow) -> str:
    return "the market as a whole" if window.topic == MARKET else key_label(window.topic)[1]


def _unit(window: TopicWindow) -> str:
    return "stories" if window.n_stories > 0 else "items"


def _span(start: datetime, end: datetime) -> str:
    """A stretch of event time as a reader wants it: the date once if it has one."""
    if start.date() == end.date():
        return f"between {start:%H:%M} and {end:%H:%M} UTC on {start:%Y-%m-%d}"
    return f"from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def _surge_texts(
    window: TopicWindow, negative: int, items: int, since: datetime, baseline: float, score: str
) -> tuple[str, str]:
    return f"Surge of negative news on {_subject(window)}", (
        f"{negative} of {items} {_unit(window)} on {window.topic} were negative "
        f"({negative / max(items, 1):.0%}) {_span(since, window.end)}, against a usual "
        f"{baseline:.0%} ({score})."
    )


def _burst_texts(
    window: TopicWindow, word: str, stories: int, usual: float, score: str
) -> tuple[str, str]:
    return f'Burst of negative news about "{word}" across topics', (
        f"{stories} of the {window.n} {_unit(window)} on the whole stream "
        f'{_span(window.start, window.end)} were negative and said "{word}" (outside '
        f"its busiest topic), against a usual {usual:.1f} ({score})."
    )


def _volume_texts(window: TopicWindow, baseline: float, score: str) -> tuple[str, str]:
    return f"Spike in news volume on {_subject(window)}", (
        f"{window.n} {_unit(window)} on {window.topic} {_span(window.start, window.end)}, "
        f"against a usual {baseline:.1f} at this time of the week ({score}), whatever "
        "their tone."
    )

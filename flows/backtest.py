"""Backtest: replay a history through the monitor and score its alerts against events.

`replay` runs the history at full speed through the same flow as `finsentry run
--input` (`flows.job.assemble`), writing alerts, windows and scored messages to files.
`rewindow` does the part after the models again from cached scored messages, with the
flow's own window and detect steps, in seconds, so detector settings can be swept.
`score_alerts` judges firing alerts against labelled events and quiet stretches, and
`render_report` draws one self-contained HTML page of it (see docs/backtest.md).
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import yaml

from flows.config import Config, DetectorConfig, WindowConfig, load_config
from processors.envelope.message import AlertEvent, Message, TopicWindow, to_json
from processors.stream.sequencer import EARLIEST
from processors.stream.window import MARKET as MARKET_WIDE  # "all": the whole stream's key

EARLY = timedelta(days=1)  # an alert this long before an event's start still catches it
QUIET_PER = timedelta(days=30)


# --- events ---------------------------------------------------------------------------


def to_utc(value: Any) -> datetime:
    """A date (midnight UTC), a datetime (naive: UTC) or an ISO string, as UTC."""
    if isinstance(value, str):
        text = value.strip()
        value = (
            date.fromisoformat(text)
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)
            else datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"not a date or time: {value!r}")


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime

    def __contains__(self, at: datetime) -> bool:
        return self.start <= at < self.end

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)


@dataclass(frozen=True)
class Event:
    """A labelled market event; `topics` None: an alert on any topic catches it."""

    name: str
    start: datetime
    end: datetime
    topics: frozenset[str] | None = None

    @property
    def catch_span(self) -> Span:
        """Where a catching alert's startsAt may lie: from a day before the start."""
        return Span(self.start - EARLY, self.end)

    def caught_by(self, alert: AlertEvent) -> bool:
        topic = alert.labels.get("topic")
        return alert.starts_at in self.catch_span and (
            self.topics is None or topic == MARKET_WIDE or topic in self.topics
        )


@dataclass(frozen=True)
class Events:
    events: tuple[Event, ...]
    quiet: tuple[Span, ...] = ()


def parse_events(data: Mapping[str, Any]) -> Events:
    """`{events: [{name, start, end, topics?}], quiet: [{start, end}]}` as `Events`."""
    if not isinstance(data, Mapping):
        raise ValueError("an events file is a mapping with `events` (and `quiet`)")
    events = []
    for i, raw in enumerate(data.get("events") or []):
        try:
            start, end = to_utc(raw["start"]), to_utc(raw["end"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"event {i + 1} needs `start` and `end`") from exc
        if end <= start:
            raise ValueError(f"event {i + 1} ends before it starts")
        topics = raw.get("topics")
        events.append(
            Event(
                str(raw.get("name") or f"event {i + 1}"),
                start,
                end,
                frozenset(topics) if topics is not None else None,
            )
        )
    quiet = []
    for i, raw in enumerate(data.get("quiet") or []):
        try:
            span = Span(to_utc(raw["start"]), to_utc(raw["end"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"quiet stretch {i + 1} needs `start` and `end`") from exc
        if span.end <= span.start:
            raise ValueError(f"quiet stretch {i + 1} ends before it starts")
        quiet.append(span)
    return Events(tuple(events), tuple(quiet))


def load_events(path: str | Path) -> Events:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot read events {path}: {exc}") from exc
    return parse_events(data or {})


# --- scoring --------------------------------------------------------------------------


@dataclass(frozen=True)
class EventScore:
    event: Event
    first_alert: AlertEvent | None
    # Firing alerts that started in the event's span on keys it does not list: where
    # the monitor filed the event, when its topics say otherwise.
    elsewhere: tuple[AlertEvent, ...] = ()

    @property
    def caught(self) -> bool:
        return self.first_alert is not None

    @property
    def lag_hours(self) -> float | None:
        if self.first_alert is None:
            return None
        return (self.first_alert.starts_at - self.event.start) / timedelta(hours=1)


@dataclass(frozen=True)
class Score:
    events: tuple[EventScore, ...]
    n_alerts: int  # firing alerts
    in_events: int  # firing alerts whose startsAt lies in some event's catch span
    quiet_alerts: int
    quiet_days: float

    @property
    def recall(self) -> float | None:
        return sum(e.caught for e in self.events) / len(self.events) if self.events else None

    @property
    def precision(self) -> float | None:
        return self.in_events / self.n_alerts if self.n_alerts else None

    @property
    def quiet_alerts_per_30_days(self) -> float | None:
        per = QUIET_PER / timedelta(days=1)
        return self.quiet_alerts / self.quiet_days * per if self.quiet_days else None

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [
                {
                    "name": e.event.name,
                    "caught": e.caught,
                    "lag_hours": _round(e.lag_hours),
                    "first_alert": alert_summary(e.first_alert) if e.first_alert else None,
                    "elsewhere": [alert_summary(a) for a in e.elsewhere],
                }
                for e in self.events
            ],
            "recall": _round(self.recall),
            "quiet_alerts_per_30_days": _round(self.quiet_alerts_per_30_days),
            "precision": _round(self.precision),
            "n_alerts": self.n_alerts,
        }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def alert_summary(alert: AlertEvent) -> dict[str, Any]:
    entity = alert.labels.get("entity")
    return {
        "alertname": alert.labels.get("alertname"),
        "topic": alert.labels.get("topic"),
        **({"entity": entity} if entity else {}),
        "severity": alert.labels.get("severity"),
        "starts_at": alert.starts_at.isoformat().replace("+00:00", "Z"),
        "fingerprint": alert.fingerprint,
    }


def firing(alerts: Iterable[AlertEvent]) -> list[AlertEvent]:
    """The firing alerts, by startsAt (then topic, for a stable order)."""
    return sorted(
        (a for a in alerts if a.status == "firing"),
        key=lambda a: (a.starts_at, a.labels.get("topic", "")),
    )


def score_alerts(alerts: Iterable[AlertEvent], events: Events) -> Score:
    """Judge the firing alerts in `alerts` against `events` (see docs/backtest.md)."""
    fired = firing(alerts)
    scores = tuple(
        EventScore(
            event,
            next((a for a in fired if event.caught_by(a)), None),
            tuple(a for a in fired if a.starts_at in event.catch_span and not event.caught_by(a)),
        )
        for event in events.events
    )
    spans = [e.catch_span for e in events.events]
    return Score(
        events=scores,
        n_alerts=len(fired),
        in_events=sum(any(a.starts_at in s for s in spans) for a in fired),
        quiet_alerts=sum(any(a.starts_at in q for q in events.quiet) for a in fired),
        quiet_days=_covered_days(events.quiet),
    )


def _covered_days(spans: Sequence[Span]) -> float:
    """Days that `spans` cover, overlaps counted once."""
    total, reach = timedelta(0), None
    for span in sorted(spans, key=attrgetter("start")):
        start = span.start if reach is None else max(span.start, reach)
        if span.end > start:
            total += span.end - start
        reach = span.end if reach is None else max(reach, span.end)
    return total / timedelta(days=1)


def format_table(score: Score) -> str:
    """Per event: caught or not, the lag of the first matching alert, its topic, and
    the keys it does not list that fired in its span."""
    rows = [("event", "caught", "lag h", "first alert", "fired elsewhere")]
    for e in score.events:
        a = e.first_alert
        rows.append(
            (
                e.event.name,
                "yes" if e.caught else "no",
                f"{e.lag_hours:+.1f}" if e.lag_hours is not None else "-",
                f"{a.window.topic} {a.starts_at:%Y-%m-%d %H:%M}" if a else "-",
                elsewhere_keys(e) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i != 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    quiet = score.quiet_alerts_per_30_days
    precision = score.precision
    recall = score.recall
    lines.append(
        f"recall {_pct(recall)}, precision {_pct(precision)} of {score.n_alerts} firing alerts, "
        + (
            f"{quiet:.1f} alerts per 30 quiet days "
            f"({score.quiet_alerts} in {score.quiet_days:.4g} days)"
            if quiet is not None
            else "no quiet stretches"
        )
    )
    return "\n".join(lines)


def elsewhere_keys(score: EventScore) -> str:
    """The keys (topic, `$TICKER`, `all`) that fired in the event's span but do not
    catch it, once each."""
    return ", ".join(dict.fromkeys(a.window.topic for a in score.elsewhere))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


# --- running the flow -----------------------------------------------------------------


@dataclass
class Outcome:
    """What a replay (or a re-window) produced: every alert event and closed window."""

    alerts: list[AlertEvent]
    windows: list[TopicWindow]
    notes: list[str] = field(default_factory=list)


def backtest_config(
    history: Path,
    work_dir: Path,
    config_path: Path | None = None,
    *,
    scored_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The config of `finsentry run --input HISTORY` with file sinks in `work_dir`.

    Nothing leaves the machine: Kafka sinks, webhooks, metrics and recovery are off.
    """
    config = load_config(
        config_path,
        env=env,
        overrides={
            **(overrides or {}),
            "source.kind": "file",
            "source.path": str(history),
            "sinks.alerts_path": work_dir / "alerts.jsonl",
            "sinks.windows_path": work_dir / "windows.jsonl",
            "sinks.scored_path": scored_path,
            "sinks.console": False,
            "webhook.receivers": [],
        },
    )
    config.kafka.scored_topic = config.kafka.alerts_topic = config.kafka.dead_letter_topic = None
    config.metrics.port = None
    config.recovery.dir = None
    return config


def replay(config: Config, *, progress: Any = None) -> Outcome:
    """Run the flow `config` describes (a file source, file sinks) to its end."""
    from bytewax.testing import run_main

    from flows.job import assemble

    sinks = config.sinks
    assert sinks.alerts_path is not None and sinks.windows_path is not None
    for path in (sinks.alerts_path, sinks.windows_path, sinks.scored_path):
        if path is not None and path.exists():
            path.unlink()  # file sinks append
    job = assemble(config, progress=progress)
    try:
        run_main(job.flow)
    finally:
        job.close()
    return Outcome(
        read_lines(sinks.alerts_path, AlertEvent), read_lines(sinks.windows_path, TopicWindow)
    )


def read_lines(path: Path, kind: type[Any]) -> list[Any]:
    """A JSON-lines file of msgspec records (missing: none)."""
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as f:
        return [decoder.decode(line) for line in f if line.strip()]


def write_outcome(outcome: Outcome, config: Config) -> None:
    """A re-window's alerts and windows into the file sinks a replay would have filled."""
    sinks = config.sinks
    for path, records in (
        (sinks.alerts_path, outcome.alerts),
        (sinks.windows_path, outcome.windows),
    ):
        if path is not None:
            path.write_bytes(b"".join(to_json(r) + b"\n" for r in records))


def read_scored(path: Path) -> list[Message]:
    return read_lines(path, Message)


def rewindow(messages: Iterable[Message], config: Config) -> Outcome:
    """The flow after its ordering point, on scored messages: windows, then detect.

    The cache holds the scored messages in the order the ordering point let them go,
    so each is placed, as there, at the latest event time so far (its order time in a
    run of one input), and the windows and the detector are the flow's own
    (`flows.steps`); each key's windows go, in order, through a `Detect` of its own.
    Unclassified windows raise no alerts.
    """
    from flows.steps import Detect, build_windows
    from processors.stream.window import UNCLASSIFIED

    placed, latest = [], EARLIEST
    for message in messages:
        latest = max(latest, message.header.published_at)
        placed.append((latest, message))
    windows = build_windows(config.window)
    closed, late = windows.add(placed)
    closed += windows.advance(None)
    detect = Detect(config.detector, config.window, config.watchlist.live())
    monitors: dict[str, Any] = {}
    out = Outcome([], closed)
    for window in closed:
        if window.topic == UNCLASSIFIED:
            continue
        monitors[window.topic], events = detect(monitors.get(window.topic), window)
        out.alerts += events
    if late:
        # The flow dead-letters these; here they are left out, and said so.
        out.notes.append(f"{len(late)} cached messages were late for their windows")
    return out


# --- sweep ----------------------------------------------------------------------------

WINDOW_LENGTHS: dict[str, float] = {"hourly": 3_600, "daily": 86_400}


def detector_grid(config: DetectorConfig) -> dict[str, list[Any]]:
    """The detector settings a sweep tries: the false-alarm budget per key and month
    (every detector's `p_fire` follows from it and the window length: the surge's, and
    the volume's and story burst's, which take the same budget in a sweep), or ewma's
    z threshold."""
    if config.kind == "evidence":
        return {"false_alarms_per_month": [0.01, 0.03, 0.1, 0.3]}
    return {"z_threshold": [2.5, 3.0, 4.0, 5.0]}


def sweep_configs(
    config: Config,
    grid: Mapping[str, Sequence[Any]] | None = None,
    windows: Mapping[str, float] | None = None,
) -> list[tuple[dict[str, Any], Config]]:
    """`config` with each combination of detector settings and tumbling window length."""
    grid = detector_grid(config.detector) if grid is None else grid
    windows = WINDOW_LENGTHS if windows is None else windows
    combos: list[dict[str, Any]] = [{}]
    for name, values in grid.items():
        combos = [{**c, name: v} for c in combos for v in values]
    out = []
    for label, length in windows.items():
        window = WindowConfig.model_validate(
            {
                **config.window.model_dump(),
                "kind": "tumbling",
                "slide_seconds": None,
                "length_seconds": length,
            }
        )
        for combo in combos:
            detector = DetectorConfig.model_validate(_with_detector_settings(config, combo))
            settings = {"window": label, **combo}
            out.append(
                (settings, config.model_copy(update={"window": window, "detector": detector}))
            )
    return out


def _with_detector_settings(config: Config, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The detector section with `settings`; a false-alarm budget is every detector's."""
    data = {**config.detector.model_dump(), **settings}
    if "false_alarms_per_month" in settings:
        budget = settings["false_alarms_per_month"]
        for section in ("volume", "burst"):
            data[section] = {**data[section], "false_alarms_per_month": budget}
    return data


def sweep(
    messages: Sequence[Message], config: Config, events: Events, **grid: Any
) -> list[dict[str, Any]]:
    """Recall, quiet alerts per 30 days (and precision) for each setting of the grid."""
    rows = []
    for settings, swept in sweep_configs(config, **grid):
        s = score_alerts(rewindow(messages, swept).alerts, events)
        rows.append(
            {
                **settings,
                "recall": _round(s.recall),
                "quiet_alerts_per_30_days": _round(s.quiet_alerts_per_30_days),
                "precision": _round(s.precision),
                "n_alerts": s.n_alerts,
            }
        )
    return rows


def format_sweep(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(empty sweep)"
    names = list(rows[0])
    cells = [names] + [[_cell(r[n]) for n in names] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(names))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if value < 1e-2 and value else f"{value:.3f}"
    return str(value)


# --- report ---------------------------------------------------------------------------

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 1100, 220, 50, 20, 14, 28


def alert_spans(alerts: Iterable[AlertEvent], until: datetime) -> dict[str, list[Span]]:
    """Per topic, from each firing alert to its resolution (or `until`)."""
    spans: dict[str, list[Span]] = defaultdict(list)
    open_: dict[str, datetime] = {}
    for a in sorted(alerts, key=lambda a: (a.starts_at, a.status != "firing")):
        topic = a.labels.get("topic", "")
        if a.status == "firing":
            open_[topic] = a.starts_at
        elif topic in open_:
            start = open_.pop(topic)
            spans[topic].append(Span(start, max(a.ends_at, start)))
    for topic, start in open_.items():
        spans[topic].append(Span(start, max(until, start)))
    return spans


def render_report(
    outcome: Outcome, events: Events, score: Score, title: str = "finsentry backtest"
) -> str:
    """One self-contained HTML page: per key that alerted (and the market-wide key), the
    negative share over time, with alert spans and event spans shaded."""
    by_key: dict[str, list[TopicWindow]] = defaultdict(list)
    for w in outcome.windows:
        by_key[w.topic].append(w)
    if not by_key:
        return _page(title, score, ["<p>No windows closed.</p>"])
    t0 = min(w.start for w in outcome.windows)
    t1 = max(w.end for w in outcome.windows)
    for e in events.events:
        t0, t1 = min(t0, e.start), max(t1, e.end)
    spans = alert_spans(outcome.alerts, t1)
    keys = ([MARKET_WIDE] if MARKET_WIDE in by_key else []) + sorted(
        k for k in spans if k != MARKET_WIDE and k in by_key
    )
    charts = [
        _chart(k, sorted(by_key[k], key=attrgetter("start")), spans.get(k, []), events, t0, t1)
        for k in keys
    ]
    if not keys:
        charts.append("<p>No alerts fired and there is no market-wide key.</p>")
    return _page(title, score, charts)


def _chart(
    key: str,
    windows: list[TopicWindow],
    alerts: list[Span],
    events: Events,
    t0: datetime,
    t1: datetime,
) -> str:
    span = max((t1 - t0).total_seconds(), 1.0)
    inner_w, inner_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(t: datetime) -> float:
        return PAD_L + (t - t0).total_seconds() / span * inner_w

    def y(share: float) -> float:
        return PAD_T + (1.0 - share) * inner_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="negative share of {html.escape(key)}">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{inner_w}" height="{inner_h}" fill="#fff" '
        'stroke="#bbb"/>',
    ]
    for q in events.quiet:
        parts.append(_band(x(q.start), x(q.end), inner_h, "#2e7d32", 0.08, "quiet"))
    for e in events.events:
        relevant = e.topics is None or key == MARKET_WIDE or key in e.topics
        label = html.escape(e.name)
        parts.append(
            _band(x(e.start), x(e.end), inner_h, "#1565c0", 0.22 if relevant else 0.07, label)
        )
    for a in alerts:
        parts.append(
            _band(x(a.start), max(x(a.end), x(a.start) + 2), inner_h, "#d32f2f", 0.35, "alert")
        )
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{y(share) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{share:.0%}</text>"
        )
    ticks = _month_ticks(t0, t1)
    fmt = "%m-%d %H:%M" if t1 - t0 <= timedelta(days=3) else "%Y-%m-%d"
    for i, tick in enumerate(ticks):
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        parts.append(
            f'<text x="{x(tick):.1f}" y="{H - 8}" font-size="11" text-anchor="{anchor}">'
            f"{tick:{fmt}}</text>"
        )
    points = " ".join(
        f"{x(w.start + (w.end - w.start) / 2):.1f},{y(w.negative_share):.1f}" for w in windows
    )
    parts.append(f'<polyline fill="none" stroke="#222" stroke-width="1.2" points="{points}"/>')
    parts.append("</svg>")
    n = sum(w.n for w in windows)
    return (
        f"<h2>{html.escape(key)}</h2><p class=meta>{len(windows)} windows, {n:,} items, "
        f"{len(alerts)} alerts</p>" + "".join(parts)
    )


def _band(x0: float, x1: float, inner_h: float, color: str, opacity: float, title: str) -> str:
    return (
        f'<rect x="{x0:.1f}" y="{PAD_T}" width="{max(x1 - x0, 0.5):.1f}" height="{inner_h}" '
        f'fill="{color}" fill-opacity="{opacity}"><title>{title}</title></rect>'
    )


def _month_ticks(t0: datetime, t1: datetime, most: int = 12) -> list[datetime]:
    span = t1 - t0
    if span <= timedelta(days=3):
        step, start = span / 6, t0
        return [start + step * i for i in range(7)]
    ticks, at = [], datetime(t0.year, t0.month, 1, tzinfo=UTC)
    while at <= t1:
        if at >= t0:
            ticks.append(at)
        at = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    if len(ticks) < 2:  # under two months: weekly
        ticks = [t0 + timedelta(days=7 * i) for i in range(int(span / timedelta(days=7)) + 1)]
    return ticks[:: max(1, len(ticks) // most + (len(ticks) % most > 0))]


def _page(title: str, score: Score, charts: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(e.event.name)}</td><td>{'yes' if e.caught else 'no'}</td>"
        f"<td>{'' if e.lag_hours is None else f'{e.lag_hours:+.1f}'}</td>"
        f"<td>{html.escape(e.first_alert.window.topic if e.first_alert else '')}</td>"
        f"<td>{html.escape(elsewhere_keys(e))}</td></tr>"
        for e in score.events
    )
    summary = html.escape(json.dumps({k: v for k, v in score.to_json().items() if k != "events"}))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 20px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
h2 {{ margin: 18px 0 2px; font-size: 16px; }} .meta {{ margin: 0 0 4px; color: #666; }}
.key span {{ display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table><tr><th>event</th><th>caught</th><th>lag (h)</th><th>first alert</th>
<th>fired elsewhere</th></tr>{rows}</table>
<p><code>{summary}</code></p>
<p class=key>negative share per window (line);
<span style="background:#d32f2f;opacity:.5"></span>alert firing
<span style="background:#1565c0;opacity:.4"></span>event (pale: not this topic's)
<span style="background:#2e7d32;opacity:.2"></span>quiet stretch</p>
{"".join(charts)}
</body></html>
"""


def work_dir(given: Path | None) -> tuple[Path, tempfile.TemporaryDirectory[str] | None]:
    """`given` (created), or a temporary directory the caller cleans up."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return given, None
    tmp = tempfile.TemporaryDirectory(prefix="finsentry-backtest-")
    return Path(tmp.name), tmp

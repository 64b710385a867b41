"""The message envelope and the other records that travel through finsentry.

Every item travels as one `Message`: a header (who, when, where it has been), a body
(what it says) and a trailer (what each processor concluded). Windows, alerts and
dead letters have their own records. All are msgspec structs: typed, fast to encode
and decode, and picklable for Bytewax snapshots. None can be part of a reference
cycle, so none is tracked by the garbage collector (`gc=False`): a job holds many
thousands of them, and rescanning them took a large share of its time.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec


class Header(msgspec.Struct, frozen=True, gc=False):
    """Identity, provenance and timing of a message."""

    id: str
    type: str  # "item" until scored, then "scored"
    source: str  # free text from the producer, e.g. "reuters" or "x"
    published_at: datetime  # event time, UTC
    ingested_at: datetime  # when finsentry read it, UTC
    route: tuple[str, ...] = ()  # processors this message has passed through


class Body(msgspec.Struct, frozen=True, gc=False):
    """The content of an item."""

    text: str
    title: str | None = None
    url: str | None = None
    lang: str | None = None
    tickers: tuple[str, ...] = ()


class Result(msgspec.Struct, frozen=True, gc=False):
    """One processor's (or one ensemble member's) verdict on one message."""

    processor: str
    task: str  # "topic" | "sentiment"
    label: str  # canonical label, see processors.envelope.labels
    scores: dict[str, float]  # canonical label -> probability
    model: str
    latency_seconds: float  # the batch's wall time, shared by its messages
    members: tuple[Result, ...] = ()  # ensemble members, when merged


class Message(msgspec.Struct, frozen=True, gc=False):
    """The envelope: header, body and the trailer of results."""

    header: Header
    body: Body
    trailer: tuple[Result, ...] = ()

    def result(self, task: str) -> Result | None:
        """The last result for `task`, or None if no processor took this message."""
        for entry in reversed(self.trailer):
            if entry.task == task:
                return entry
        return None


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """An input that could not be processed, kept with the reason why.

    Build one with `dead_letter`, which bounds `payload` and `detail` so that a letter
    always fits where it goes (a Kafka topic, a file), whatever the input held.
    """

    reason: str  # one of processors.envelope.parse.REASONS
    detail: str  # at most MAX_DETAIL_BYTES of UTF-8
    payload: str  # the raw input, decoded with replacement if not UTF-8, and maybe cut
    source: str  # the input it came from, e.g. "file:events.jsonl"
    position: str | None = None  # line number or partition/offset
    at: datetime | None = None
    payload_bytes: int = -1  # length of the original raw input in bytes; -1: not known
    payload_sha256: str = ""  # hex digest of the original raw bytes; "": not known


MAX_DEAD_LETTER_PAYLOAD_BYTES = 16 * 1024
MAX_DETAIL_BYTES = 1024


def dead_letter(
    reason: str,
    detail: str,
    raw: bytes | str,
    source: str,
    position: str | None = None,
    at: datetime | None = None,
    *,
    max_payload_bytes: int = MAX_DEAD_LETTER_PAYLOAD_BYTES,
) -> DeadLetter:
    """A `DeadLetter` for `raw`, the one place where payloads are cut.

    The stored payload is `raw` decoded as UTF-8 with replacement, cut to at most
    `max_payload_bytes` bytes of UTF-8 (so replacement characters, three bytes each,
    cannot blow it up); the original length and sha256 digest are kept beside it.
    A `str` is taken as its UTF-8 encoding. `detail` is cut to `MAX_DETAIL_BYTES`.
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", errors="surrogatepass")
    return DeadLetter(
        reason=reason,
        detail=cut_utf8(detail, MAX_DETAIL_BYTES),
        # Each raw byte decodes to at least one byte of UTF-8, so a prefix of
        # `max_payload_bytes` (and 3 more, not to split the last character) is enough.
        payload=cut_utf8(
            data[: max_payload_bytes + 3].decode("utf-8", errors="replace"), max_payload_bytes
        ),
        source=source,
        position=position,
        at=at,
        payload_bytes=len(data),
        payload_sha256=hashlib.sha256(data).hexdigest(),
    )


def cut_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never within a character."""
    if len(text) * 4 <= limit:  # fast path: cannot exceed the limit
        return text
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


class Evidence(msgspec.Struct, frozen=True, gc=False):
    """A headline kept to show why a window looks the way it does."""

    id: str
    text: str
    negative: float  # probability of negative sentiment
    published_at: datetime
    echoes: int = 0  # other copies of this story in the window (reprints, rewordings)


class TopicWindow(msgspec.Struct, frozen=True, gc=False):
    """Sentiment of one topic over one event-time window."""

    topic: str
    start: datetime
    end: datetime
    n: int
    n_negative: int
    n_neutral: int
    n_positive: int
    negative_share: float
    mean_score: float  # mean sentiment in [-1, 1]
    evidence: tuple[Evidence, ...] = ()
    # The topic with the most negative stories in the window, its stories with a
    # sentiment and its negative stories: the market-wide key judges the window without it.
    leading_topic: str = ""
    leading_n: int = 0
    leading_negative: int = 0
    # Distinct stories among the items (copies of one story count once), and those whose
    # first copy in the window is negative.
    n_stories: int = 0
    n_negative_stories: int = 0
    # The market-wide key's only: each content word of its negative stories -> (those
    # stories, and those outside the word's busiest topic), for the story-burst detector.
    negative_words: dict[str, tuple[int, int]] = {}
    # The key's stories by source (each story by its first copy's), and the sources that
    # published anything in the whole stream in the window: the volume detector's usual
    # count is per source, so a feed that starts is not a spike.
    sources: dict[str, int] = {}
    stream_sources: tuple[str, ...] = ()


NO_END = datetime(1, 1, 1, tzinfo=UTC)


class AlertEvent(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    """One alert state change, in the shape of an Alertmanager v4 webhook alert.

    `status` is "firing" when the alert starts and "resolved" when it ends; a
    fingerprint is stable per (alertname, topic) so receivers can group the two.
    """

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime  # NO_END while firing, as Alertmanager writes it
    fingerprint: str
    window: TopicWindow
    baseline_negative_share: float
    score: float  # the detector's evidence, in the unit `score_name` says
    score_name: str = "-log10 p"  # "-log10 p": the window's tail probability; "z": a z-score
    generator_url: str = msgspec.field(default="", name="generatorURL")

    @property
    def event_id(self) -> str:
        """Identifies this state change, for sinks that must not send it twice."""
        return f"{self.fingerprint}:{self.status}:{self.starts_at.isoformat()}"


def to_json(record: msgspec.Struct) -> bytes:
    """Encode any record as one compact JSON object."""
    return _encoder.encode(record)


_encoder = msgspec.json.Encoder()

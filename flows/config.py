"""The one typed configuration object, loaded from YAML with environment overrides.

Any field can be overridden by an environment variable `FINSENTRY_<SECTION>__<FIELD>`,
e.g. `FINSENTRY_WINDOW__LENGTH_SECONDS=600`; values are read as YAML scalars, Kafka
passwords as they stand. Secrets may come from files instead (`secret_file`,
`<option>_file`), read at load. An invalid configuration fails at start with a message
naming the field.
"""

from __future__ import annotations

import functools
import os
import random
import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from processors.entities.catalog import normal_ticker
from processors.envelope.labels import TOPICS
from processors.stream.window import MARKET

if TYPE_CHECKING:
    from flows.watchlist import LiveWatchlist
    from processors.envelope.message import AlertEvent

ENV_PREFIX = "FINSENTRY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    kind: Literal["demo", "file", "kafka"] = "demo"
    path: Path | None = None
    batch_size: int = Field(256, gt=0, description="items per source batch")
    batch_wait_seconds: float = Field(
        0.1,
        ge=0,
        description="time budget of a Kafka batch: once it has a first item, the longest it "
        "waits to fill up to `batch_size` (0: what is there)",
    )
    max_delay_seconds: float = Field(
        5,
        ge=0,
        description="the longest a record takes from its event time to the broker: a Kafka "
        "partition that has caught up counts as this far behind the clock (docs/kafka.md)",
    )
    demo_minutes: int = Field(390, gt=0, description="length of the generated market day")
    demo_day: date | None = Field(
        None, description="date of the generated day; default: the previous weekday"
    )
    demo_seed: int = 7
    demo_surge_topic: str = "energy_oil"

    @model_validator(mode="after")
    def _file_needs_path(self) -> SourceConfig:
        if self.kind == "file" and self.path is None:
            raise ValueError("a file source needs `path`")
        return self


class ParseConfig(_Section):
    max_text_chars: int = Field(10_000, gt=0)
    max_future_seconds: float = Field(86_400, ge=0)
    max_dead_letter_payload_bytes: int = Field(
        16_384,
        ge=0,
        description="the most of a bad record's raw input a dead letter keeps, in UTF-8 "
        "bytes of the stored text; its full length and sha256 are kept beside it",
    )


class DedupeConfig(_Section):
    enabled: bool = True
    horizon_seconds: float = Field(3_600, gt=0)


class ZeroShotConfig(_Section):
    """An NLI model as a zero-shot classifier over the labels listed here (see README)."""

    labels: dict[str, str] = Field(description="canonical label -> words for the hypothesis")
    hypothesis: str = "This text is about {}."
    multi_label: bool = Field(
        False, description="judge each label on its own (entailment vs contradiction)"
    )


class ModelConfig(_Section):
    model: str = Field("default", description="'default', a Hugging Face hub id, or a path")
    weight: float = Field(1.0, gt=0)
    label_map: dict[str, str] | None = None
    heads: Path | None = Field(None, description="head weights for the default model")
    encoder: Path | None = Field(
        None, description="fine-tuned encoder directory for the default model (its heads too)"
    )
    zero_shot: ZeroShotConfig | None = None

    @model_validator(mode="after")
    def _options_fit_model(self) -> ModelConfig:
        if self.zero_shot is not None and (self.model == "default" or self.label_map):
            raise ValueError("zero_shot needs an NLI model and takes no label_map")
        return self


class RouteConfig(_Section):
    sources: list[str] = []
    langs: list[str] = []


class ProcessorConfig(_Section):
    name: str
    kind: Literal["classify", "noop", "entities"] = Field(
        "classify",
        description="noop: pass-through, to measure the pipeline without models; entities: "
        "the tickers a message names, from the built-in company list (docs/entities.md)",
    )
    task: Literal["topic", "sentiment", "entities"] = Field(
        "topic", description="what a classifier labels; an entities processor's is entities"
    )
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig()], min_length=1)
    merge: Literal["vote", "weighted_mean"] = "weighted_mean"
    route: RouteConfig = RouteConfig()

    @model_validator(mode="before")
    @classmethod
    def _entities_task(cls, data: Any) -> Any:
        """`kind: entities` alone is enough: its task can only be entities."""
        if isinstance(data, dict) and data.get("kind") == "entities":
            return {"task": "entities", **data}
        return data

    @model_validator(mode="after")
    def _task_fits_kind(self) -> ProcessorConfig:
        if (self.kind == "entities") != (self.task == "entities") and self.kind != "noop":
            raise ValueError("task entities is done by kind entities, and only by it")
        return self


def _default_chain() -> list[ProcessorConfig]:
    return [
        ProcessorConfig(name="topic", task="topic"),
        ProcessorConfig(name="sentiment", task="sentiment"),
        ProcessorConfig(name="entities", kind="entities"),
    ]


class InferenceConfig(_Section):
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA that has it, else float16; CPU float32"
    )
    max_tokens: int = Field(128, gt=0)
    max_batch_tokens: int | None = Field(
        None, gt=0, description="padded tokens per micro-batch; default: 4096 CPU, 32768 CUDA"
    )
    batch_size: int = Field(256, gt=0, description="most texts in one micro-batch")
    compile: bool = Field(False, description="torch.compile the models")
    threads: int | None = Field(None, gt=0, description="torch CPU threads; default: torch's")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="onnx: the default model's encoder on ONNX Runtime, int8, CPU"
    )
    onnx_path: Path | None = Field(
        None,
        description="the ONNX export (`finsentry export-onnx`); default: in ~/.cache/finsentry",
    )


class WindowConfig(_Section):
    kind: Literal["tumbling", "sliding"] = "tumbling"
    length_seconds: float = Field(300, gt=0)
    slide_seconds: float | None = Field(None, gt=0, description="sliding windows only")
    allowed_lateness_seconds: float = Field(30, ge=0)
    align_to: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    story_horizon_seconds: float = Field(
        0,
        ge=0,
        description="0: copies of one story are its identical texts (case and punctuation "
        "aside); above 0, reprints and rewordings seen within this much event time too "
        "(found once per item, before its keys: see docs/messages.md)",
    )
    max_stories: int = Field(
        5_000, gt=0, description="stories a key remembers, at most (snapshots carry them)"
    )

    @model_validator(mode="after")
    def _slide_fits(self) -> WindowConfig:
        if self.kind == "sliding":
            if self.slide_seconds is None:
                raise ValueError("sliding windows need `slide_seconds`")
            if self.slide_seconds > self.length_seconds:
                raise ValueError("`slide_seconds` must not exceed `length_seconds`")
        return self

    @property
    def step_seconds(self) -> float:
        return (
            self.slide_seconds
            if self.kind == "sliding" and self.slide_seconds
            else self.length_seconds
        )


class VolumeConfig(_Section):
    """News-volume spikes (NewsVolumeSpike), judged beside the negative surges of every
    key: a window's item count against the key's usual count at that time of the week
    (see docs/alerts.md)."""

    enabled: bool = True
    false_alarms_per_month: float = Field(
        0.03, gt=0, description="false alarms a key may raise in 30 days of event time"
    )
    min_ratio: float = Field(2.0, ge=1, description="times the usual count to fire")
    resolve_ratio: float = Field(1.5, ge=1, description="resolved under this many times it")
    prior_dispersion: float = Field(0.25, gt=0, description="a new key's burstiness")
    half_life_seconds: float = Field(28 * 86_400.0, gt=0, description="event time to halve")


class BurstConfig(_Section):
    """Bursts of negative stories that share a word across topics (NegativeStoryBurst),
    judged on the market-wide key beside its negative surge and volume spike (see
    docs/alerts.md)."""

    enabled: bool = True
    false_alarms_per_month: float = Field(
        0.03, gt=0, description="false alarms the key may raise in 30 days of event time"
    )
    min_stories: int = Field(
        4, gt=0, description="negative stories outside the word's busiest topic, at least"
    )
    min_ratio: float = Field(3.0, ge=1, description="times the word's usual count to fire")
    resolve_ratio: float = Field(1.5, ge=1, description="resolved under this many times it")
    prior_stories: float = Field(
        2000.0, gt=0, description="a new word is one negative story in this many; warm-up"
    )
    half_life_seconds: float = Field(14 * 86_400.0, gt=0, description="event time to halve")


class DetectorConfig(_Section):
    """The detector of every key (see docs/configuration.md); each kind reads its own fields.

    evidence (default): a window fires when its negative count is too unlikely under
    the key's pooled beta-binomial baseline (tail p below `p_fire`) and its share is at
    least `min_lift` above that baseline. ewma: the older z-score against an EWMA of
    window shares, gated on `min_count` items.
    """

    kind: Literal["evidence", "ewma"] = "evidence"
    critical_share: float = Field(0.7, ge=0, le=1)
    prior_share: float = Field(0.15, ge=0, le=1, description="a new key's negative share")
    # evidence
    false_alarms_per_month: float = Field(
        0.03, gt=0, description="false alarms a key may raise in 30 days of event time"
    )
    p_fire: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="tail probability that fires; default: false_alarms_per_month over the "
        "windows a key closes in 30 days",
    )
    p_resolve: float = Field(0.05, gt=0, lt=1, description="tail probability that resolves")
    p_suspect: float = Field(
        0.01, gt=0, lt=1, description="held from the baseline, judged with the next window"
    )
    min_lift: float = Field(0.15, ge=0, le=1, description="share above baseline to fire")
    resolve_lift: float = Field(0.05, ge=0, le=1, description="resolved within this of it")
    prior_items: float = Field(10.0, gt=0, description="weight of prior_share, in items")
    prior_rho: float = Field(0.02, gt=0, lt=1, description="prior between-window spread")
    prior_rho_windows: float = Field(5.0, ge=0, description="weight of prior_rho, in windows")
    min_rho: float = Field(0.005, ge=0, lt=1, description="floor of the spread")
    half_life_seconds: float = Field(14 * 86_400.0, gt=0, description="event time to halve")
    warmup_items: float = Field(10.0, ge=0, description="learnt items before it may fire")
    # ewma
    alpha: float = Field(0.2, gt=0, le=1)
    z_threshold: float = Field(3.0, gt=0)
    share_floor: float = Field(0.4, ge=0, le=1)
    min_count: int = Field(20, gt=0)
    warmup_windows: int = Field(3, ge=0)
    resolve_z: float = 1.5
    resolve_share: float = Field(0.3, ge=0, le=1)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    burst: BurstConfig = Field(default_factory=BurstConfig)

    def with_overrides(self, overrides: Mapping[str, Any]) -> DetectorConfig:
        """This config with a watched entity's overrides (`volume` merged field by
        field), validated as the section itself is."""
        data = self.model_dump()
        volume = {**data.pop("volume"), **overrides.get("volume", {})}
        return DetectorConfig.model_validate({**data, **overrides, "volume": volume})


# Detector settings an entity may not change: they pick which detectors a key has, and a
# key's detectors (with what they learnt) outlive a watchlist's reloads.
FIXED_DETECTOR_FIELDS = ("kind", "volume.enabled")
# Alert labels finsentry sets itself; a watchlist's routing labels are others.
RESERVED_LABELS = frozenset({"alertname", "topic", "entity", "severity"})
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class WatchedEntityConfig(_Section):
    """One watched entity (docs/entities.md#watchlists): its id, the names text calls it
    by, routing labels for its alerts, and detector settings of its own."""

    id: str = Field(
        description="its ticker, or an id of your own for a private company (upper case, "
        "letters, digits and '.')",
    )
    aliases: list[str] = Field([], description="names matched as the catalog's names are")
    labels: dict[str, str] = Field({}, description="added to its alerts' labels, for routes")
    detector: dict[str, Any] = Field(
        {}, description="fields of the detector section, for this entity's keys alone"
    )

    @field_validator("id")
    @classmethod
    def _ticker_like(cls, id: str) -> str:
        ticker = normal_ticker(id)
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9.]{0,15}", ticker):
            raise ValueError(f"id {id!r}: letters, digits and '.', up to 16")
        return ticker

    @field_validator("aliases")
    @classmethod
    def _names(cls, aliases: list[str]) -> list[str]:
        if any(not alias.strip() for alias in aliases):
            raise ValueError("an alias is empty")
        return [alias.strip() for alias in aliases]

    @field_validator("labels")
    @classmethod
    def _routing_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for name, value in labels.items():
            if name in RESERVED_LABELS or name.startswith("__") or not LABEL_NAME.match(name):
                raise ValueError(
                    f"label {name!r}: routing labels are Prometheus label names other than "
                    f"finsentry's own ({', '.join(sorted(RESERVED_LABELS))})"
                )
            if not value:
                raise ValueError(f"label {name!r} is empty")
        return labels

    @field_validator("detector")
    @classmethod
    def _detector_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        volume = overrides.get("volume", {})
        if not isinstance(volume, dict):
            raise ValueError("detector.volume must be a mapping")
        given = {*overrides, *(f"volume.{name}" for name in volume)}
        fixed = sorted(given & set(FIXED_DETECTOR_FIELDS))
        if fixed:
            raise ValueError(f"{fixed} cannot be set per entity")
        DetectorConfig().with_overrides(overrides)  # unknown fields, bad values: fail here
        return overrides


_WATCHED_ENTITIES = TypeAdapter(list[WatchedEntityConfig])


def read_watchlist_file(path: Path) -> list[WatchedEntityConfig]:
    """The entities a watchlist file lists: a YAML list, each item as in
    `watchlist.entities`. A file that cannot be read or is invalid raises ValueError."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    try:
        return _WATCHED_ENTITIES.validate_python(loaded or [])
    except ValidationError as exc:
        raise ValueError(f"{path}: {_problems(exc)}") from None


class WatchlistConfig(_Section):
    """The entities to watch (docs/entities.md#watchlists): listed here, in `file`, or
    both. The file is re-read when it changes; a bad version is logged and skipped."""

    entities: list[WatchedEntityConfig] = []
    file: Path | None = Field(None, description="a YAML list of entities, re-read on change")
    check_seconds: float = Field(
        5.0, ge=0, description="how often, at most, the file's modification time is looked at"
    )
    _live: LiveWatchlist | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _file_valid(self) -> WatchlistConfig:
        self.read()  # a bad file stops the job at start, naming it
        return self

    def read(self) -> list[WatchedEntityConfig]:
        """The entities listed here and in the file now, each id once (ValueError if not)."""
        entities = [*self.entities, *(read_watchlist_file(self.file) if self.file else [])]
        twice = sorted(id for id, n in Counter(e.id for e in entities).items() if n > 1)
        if twice:
            raise ValueError(f"entities listed more than once: {twice}")
        return entities

    def live(self) -> LiveWatchlist:
        """The job's one live watchlist: every step that asks shares it."""
        if self._live is None:
            from flows.watchlist import LiveWatchlist

            self._live = LiveWatchlist(self)
        return self._live


class SinksConfig(_Section):
    alerts_path: Path | None = None
    dead_letters_path: Path | None = None
    scored_path: Path | None = None
    windows_path: Path | None = None
    console: bool = True
    state_dir: Path | None = Field(
        None,
        description="what sinks must remember across restarts (ids of Kafka records sent, "
        "the webhook outbox); "
        "default: beside recovery.dir, as <recovery.dir>-state, else $XDG_STATE_HOME/finsentry "
        "(~/.local/state/finsentry)",
    )


def default_state_dir() -> Path:
    """Where a job keeps its state when nothing names a place: the platform's directory
    for state (XDG), never the working directory, which is often a checkout."""
    base = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec ignores a relative value.
    root = Path(base) if Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "finsentry"


def _read_secret_file(path: Path, field: str) -> str:
    """The secret `path` holds, less the one trailing newline `echo` or an editor leaves;
    read at load, so that a secret need never be on a command line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ValueError(f"{field}: cannot read {path}: {reason}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ValueError(f"{field}: {path} is empty")
    return secret


@functools.cache
def kafka_client_options() -> frozenset[str]:
    """Connection and security settings that every kafka-python client (consumer, producer,
    admin) accepts; anything else in `client_options` is a mistake, not a pass-through."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    return frozenset(
        name
        for name in set(KafkaConsumer.DEFAULT_CONFIG)
        & set(KafkaProducer.DEFAULT_CONFIG)
        & set(KafkaAdminClient.DEFAULT_CONFIG)
        if name.startswith(("ssl_", "sasl_"))
        or name
        in {"security_protocol", "client_id", "api_version", "proxy_url", "client_dns_lookup"}
    )


# Kafka client options that hold a secret; each may come from a file, as `<name>_file`.
SECRET_CLIENT_OPTIONS = ("sasl_plain_password", "ssl_password")


def _client_secrets_from_files(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `options` with each `<secret>_file` replaced by the secret the file holds;
    a secret must be text (an unquoted YAML number would lose its leading zeros)."""
    options = dict(options)
    for name in SECRET_CLIENT_OPTIONS:
        path = options.pop(f"{name}_file", None)
        if path is not None:
            if name in options:
                raise ValueError(f"set client_options.{name} or {name}_file, not both")
            options[name] = _read_secret_file(Path(path), f"client_options.{name}_file")
        if not isinstance(options.get(name, ""), str):
            raise ValueError(f"client_options.{name} must be a string (quote it in YAML)")
    return options


def check_client_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check `options` against the settings kafka-python accepts; returns a copy."""
    options = dict(options or {})
    if not options:  # nothing to check: kafka-python need not even be imported
        return options
    accepted = kafka_client_options()
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"unknown Kafka client options {unknown}; accepted: {sorted(accepted)}")
    return options


class KafkaConfig(_Section):
    """Brokers and topics; SASL/SSL settings go in `client_options` (kafka-python names)."""

    brokers: list[str] = []
    input_topics: list[str] = []
    starting_offset: Literal["earliest", "latest"] = "earliest"
    exit_at_end: bool = Field(
        False, description="read to the end offsets found at start, then stop"
    )
    scored_topic: str | None = None
    alerts_topic: str | None = None
    dead_letter_topic: str | None = None
    dead_letter_fallback_path: Path | None = Field(
        None,
        description="JSON lines file for dead letters the dead-letter topic would not take "
        "(after retries); default: dead-letters-undeliverable.jsonl in sinks.state_dir",
    )
    sent_retention_seconds: float = Field(
        7 * 86_400,
        gt=0,
        description="how long the ids of records sent to Kafka are kept in sinks.state_dir "
        "so that a resumed job skips them; longer than the job is ever stopped before it "
        "resumes",
    )
    # repr=False: it may hold passwords, which kafka-python takes as plain strings.
    client_options: dict[str, Any] = Field({}, repr=False)
    connect_timeout_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _options_read_and_checked(self) -> KafkaConfig:
        self.client_options = check_client_options(_client_secrets_from_files(self.client_options))
        return self


class RecoveryConfig(_Section):
    """Bytewax snapshots; the directory and its partitions are created on first use."""

    dir: Path | None = None
    snapshot_interval_seconds: float = Field(10.0, gt=0)
    partitions: int = Field(1, gt=0)


class AlertRoute(_Section):
    """Which alert events a webhook receiver gets; an empty list matches everything."""

    severities: list[Literal["warning", "critical"]] = []
    topics: list[str] = []
    entities: list[str] = Field([], description="tickers; an entity's alerts carry `entity`")
    labels: dict[str, list[str]] = Field(
        {},
        description="label -> the values it may have (one value or a list), e.g. a "
        "watchlist's routing labels: {desk: energy}",
    )
    send_resolved: bool = True

    @field_validator("labels", mode="before")
    @classmethod
    def _values_as_lists(cls, labels: Any) -> Any:
        if isinstance(labels, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in labels.items()}
        return labels

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: list[str]) -> list[str]:
        known = (*TOPICS, MARKET)  # "all": the market-wide key
        unknown = sorted(set(topics) - set(known))
        if unknown:
            raise ValueError(f"unknown topics {unknown}; known: {', '.join(known)}")
        return topics

    def accepts(self, alert: AlertEvent) -> bool:
        return (
            (self.send_resolved or alert.status != "resolved")
            and (not self.severities or alert.labels.get("severity") in self.severities)
            and (not self.topics or alert.labels.get("topic") in self.topics)
            and (not self.entities or alert.labels.get("entity") in self.entities)
            and all(alert.labels.get(name) in values for name, values in self.labels.items())
        )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ReceiverConfig(_Section):
    """One webhook endpoint. `name` is a metric label, so it is short and plain."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    url: HttpUrl
    secret: SecretStr | None = None
    secret_file: Path | None = Field(
        None, description="a file holding `secret` (e.g. a Docker secret), read at start"
    )
    format: Literal["alertmanager", "json", "slack"] = "alertmanager"
    route: AlertRoute = AlertRoute()
    timeout_seconds: float = Field(5.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="then the row is marked failed")
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    backoff_multiplier: float = Field(2.0, ge=1)
    allow_http: bool = Field(False, description="allow a plain http:// URL off loopback")
    ca_bundle: Path | None = Field(None, description="CA certificates to verify the receiver")
    client_cert: Path | None = Field(None, description="client certificate (PEM) for mTLS")
    client_key: Path | None = Field(None, description="its private key, if not in client_cert")

    @model_validator(mode="after")
    def _trusted_transport(self) -> ReceiverConfig:
        # Plain http carries the alert and its signature in the clear; loopback is exempt
        # (a local relay or a test receiver), anything else must opt in.
        if (
            self.url.scheme == "http"
            and not self.allow_http
            and (self.url.host or "").strip("[]") not in LOOPBACK_HOSTS
        ):
            raise ValueError(
                f"receiver {self.name}: url is plain http://; use https:// or set allow_http: true"
            )
        if self.client_key is not None and self.client_cert is None:
            raise ValueError(f"receiver {self.name}: client_key needs client_cert")
        return self

    @model_validator(mode="after")
    def _secret_from_file(self) -> ReceiverConfig:
        if self.secret_file is not None:
            if self.secret is not None:
                raise ValueError(f"receiver {self.name}: set secret or secret_file, not both")
            field = f"receiver {self.name}: secret_file"
            self.secret = SecretStr(_read_secret_file(self.secret_file, field))
        return self

    def backoff(self, attempts: int) -> float:
        """Delay after the `attempts`-th failure: exponential, capped, with equal jitter."""
        ceiling = min(
            self.backoff_max_seconds,
            self.backoff_initial_seconds * self.backoff_multiplier ** (attempts - 1),
        )
        return random.uniform(ceiling / 2, ceiling)


class WebhookConfig(_Section):
    """Alert webhooks; the outbox lives in `state_dir`, which must outlive restarts.

    Left unset, the job's `sinks.state_dir` is used (see `Config`).
    """

    receivers: list[ReceiverConfig] = []
    state_dir: Path | None = None
    external_url: str = Field("", description="Alertmanager payloads' externalURL")
    poll_seconds: float = Field(1.0, gt=0, description="look for rows other processes queued")
    close_timeout_seconds: float = Field(10.0, ge=0, description="bound on the flush at close")
    drain_seconds: float = Field(
        10.0, ge=0, description="at the end of a finite input, wait this long for deliveries"
    )

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, receivers: list[ReceiverConfig]) -> list[ReceiverConfig]:
        names = [r.name for r in receivers]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique: {names}")
        return receivers


class MetricsConfig(_Section):
    port: int | None = Field(None, ge=0, le=65535)
    host: str = "127.0.0.1"


class Config(_Section):
    source: SourceConfig = SourceConfig()
    parse: ParseConfig = ParseConfig()
    dedupe: DedupeConfig = DedupeConfig()
    processors: list[ProcessorConfig] = Field(default_factory=_default_chain)
    inference: InferenceConfig = InferenceConfig()
    window: WindowConfig = WindowConfig()
    detector: DetectorConfig = DetectorConfig()
    sinks: SinksConfig = SinksConfig()
    kafka: KafkaConfig = KafkaConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    webhook: WebhookConfig = WebhookConfig()
    metrics: MetricsConfig = MetricsConfig()
    watchlist: WatchlistConfig = WatchlistConfig()

    @model_validator(mode="after")
    def _kafka_complete(self) -> Config:
        k = self.kafka
        uses_kafka = self.source.kind == "kafka" or any(
            (k.scored_topic, k.alerts_topic, k.dead_letter_topic)
        )
        if uses_kafka and not k.brokers:
            raise ValueError("kafka.brokers is required when a Kafka source or sink is used")
        if self.source.kind == "kafka" and not k.input_topics:
            raise ValueError("kafka.input_topics is required for a Kafka source")
        return self

    @model_validator(mode="after")
    def _state_dirs(self) -> Config:
        # A resumed job emits again what followed its last snapshot; the state that
        # lets sinks skip it must live as long as the snapshots do. Without snapshots it
        # goes where the platform keeps state, not into the working directory.
        if self.sinks.state_dir is None and self.recovery.dir is not None:
            recovery = self.recovery.dir.absolute()
            self.sinks.state_dir = recovery.with_name(f"{recovery.name}-state")
        elif self.sinks.state_dir is None:
            self.sinks.state_dir = default_state_dir()
        if self.webhook.state_dir is None:
            self.webhook.state_dir = self.sinks.state_dir
        return self


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field."""


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read YAML (if given), apply `FINSENTRY_<SECTION>__<FIELD>` variables, then `overrides`.

    `overrides` maps dotted field paths to values, for command-line flags:
    `{"source.path": "events.jsonl"}`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        data = loaded or {}
    for name, raw in (os.environ if env is None else env).items():
        # Only FINSENTRY_<SECTION>__<FIELD> is a setting; FINSENTRY_CONFIG, FINSENTRY_TORCH
        # and secrets belong to whoever reads them.
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            # A password is text as it stands: YAML would make "0123" the number 123.
            verbatim = not raw or dotted.rpartition(".")[2] in SECRET_CLIENT_OPTIONS
            _set(data, dotted, raw if verbatim else yaml.safe_load(raw))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(data, dotted, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
        node = child
    node[leaf] = value

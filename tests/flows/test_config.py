"""One typed config: YAML, then environment, then flags; errors name the field."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flows.config import ConfigError, load_config
from tests.helpers import ROOT


def test_defaults_are_the_default_chain_and_tumbling_windows() -> None:
    config = load_config(env={})
    assert [(p.name, p.kind, p.task) for p in config.processors] == [
        ("topic", "classify", "topic"),
        ("sentiment", "classify", "sentiment"),
        ("entities", "entities", "entities"),
    ]
    assert config.window.kind == "tumbling" and config.window.step_seconds == 300
    assert config.metrics.host == "127.0.0.1"


def test_yaml_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "window: {kind: sliding, length_seconds: 900, slide_seconds: 300}\n"
        "detector: {z_threshold: 4}\n"
        "processors:\n"
        "  - {name: tone, task: sentiment, merge: vote,\n"
        "     models: [{model: default}, {model: x/y, weight: 2}]}\n"
    )
    env = {
        "FINSENTRY_DETECTOR__MIN_COUNT": "50",
        "FINSENTRY_WINDOW__LENGTH_SECONDS": "1200",
        "OTHER": "1",
        # Not settings: read by what owns them (the flow, setup.sh, the webhook receiver).
        "FINSENTRY_CONFIG": str(path),
        "FINSENTRY_TORCH": "torch==2.13.0",
        "FINSENTRY_WEBHOOK_SECRET": "s3cret",
    }
    config = load_config(
        path, env=env, overrides={"window.length_seconds": 600, "metrics.port": None}
    )
    assert config.window.kind == "sliding" and config.window.step_seconds == 300
    assert config.window.length_seconds == 600  # flags win over the environment
    assert config.detector.min_count == 50 and config.detector.z_threshold == 4
    assert [m.weight for m in config.processors[0].models] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("text", "env", "field"),
    [
        ("window: {length_seconds: 0}\n", {}, "window.length_seconds"),
        ("window: {kind: sliding, length_seconds: 60}\n", {}, "window"),
        ("detector: {share_floor: 1.5}\n", {}, "detector.share_floor"),
        ("processors: [{name: p, task: mood}]\n", {}, "processors.0.task"),
        ("sinks: {alert_path: a.jsonl}\n", {}, "sinks.alert_path"),
        ("", {"FINSENTRY_DEDUPE__HORIZON_SECONDS": "soon"}, "dedupe.horizon_seconds"),
        ("", {"FINSENTRY_DEDUPE__HORIZON": "60"}, "dedupe.horizon"),
        ("source: {kind: kafka}\n", {}, "kafka.brokers"),
        ("kafka: {client_options: {sasl_password_typo: x}}\n", {}, "sasl_password_typo"),
    ],
)
def test_invalid_config_names_the_field(
    tmp_path: Path, text: str, env: dict[str, str], field: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(path, env=env)


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml", env={})


def test_configuration_imports_no_source_or_sink() -> None:
    """Configuration is the root: the edges take their schemas from it, never the reverse."""
    flows_dir = ROOT / "flows"
    paths = sorted(flows_dir.glob("config*.py")) + sorted(flows_dir.glob("config/**/*.py"))
    assert paths
    edges = ("flows.sources", "flows.sinks")
    offenders = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} imports {name}"
                for name in names
                if any(name == edge or name.startswith(edge + ".") for edge in edges)
            ]
    assert offenders == []


def test_state_defaults_to_the_platform_state_dir_never_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = load_config(env={})
    assert config.sinks.state_dir == config.webhook.state_dir == tmp_path / "xdg" / "finsentry"
    home = Path.home() / ".local" / "state" / "finsentry"
    for unusable in ("", "relative/state"):  # the XDG spec ignores a relative path
        monkeypatch.setenv("XDG_STATE_HOME", unusable)
        assert load_config(env={}).sinks.state_dir == home
    monkeypatch.delenv("XDG_STATE_HOME")
    assert load_config(env={}).sinks.state_dir == home
    beside = load_config(env={}, overrides={"recovery.dir": tmp_path / "snapshots"})
    assert beside.sinks.state_dir == beside.webhook.state_dir == tmp_path / "snapshots-state"
    named = {"sinks.state_dir": tmp_path / "sinks", "webhook.state_dir": tmp_path / "outbox"}
    explicit = load_config(env={}, overrides={"recovery.dir": tmp_path / "snapshots", **named})
    assert (explicit.sinks.state_dir, explicit.webhook.state_dir) == tuple(named.values())


def test_a_job_started_in_a_checkout_leaves_its_state_outside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.job import assemble

    checkout, state = tmp_path / "checkout", tmp_path / "xdg"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    hooks = {"webhook.receivers": [{"name": "ops", "url": "http://127.0.0.1:9/h"}]}
    job = assemble(load_config(env={}, overrides=hooks), load_models=False)
    job.close()
    assert list(checkout.iterdir()) == []
    assert (state / "finsentry" / "webhook-outbox.sqlite3").is_file()

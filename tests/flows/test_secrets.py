"""Secrets reach the job from files or the environment, never only from a command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flows.cli.job as job_cli
from flows.cli import main
from flows.config import Config, ConfigError, load_config

SECRET = "0123-s3cret"  # a leading zero: YAML would read a bare 0123 as a number


def secret_file(tmp_path: Path, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    return path


def receiver(**fields: Any) -> dict[str, Any]:
    return {"webhook.receivers": [{"name": "ops", "url": "http://127.0.0.1:9/h", **fields}]}


def the_secret(config: Config) -> str | None:
    (only,) = config.webhook.receivers
    return only.secret.get_secret_value() if only.secret else None


@pytest.mark.parametrize(
    ("text", "secret"),
    [(SECRET + "\n", SECRET), (SECRET + "\r\n", SECRET), (SECRET + "\n\n", SECRET + "\n")],
)
def test_a_receiver_secret_file_is_read_less_one_trailing_newline(
    tmp_path: Path, text: str, secret: str
) -> None:
    path = secret_file(tmp_path, text)
    config = load_config(env={}, overrides=receiver(secret_file=path))
    assert the_secret(config) == secret


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"secret": "x", "secret_file": "SECRET_FILE"}, "set secret or secret_file, not both"),
        ({"secret_file": "MISSING"}, "secret_file: cannot read MISSING: No such file"),
        ({"secret_file": "EMPTY"}, "secret_file: EMPTY is empty"),
    ],
)
def test_a_receiver_secret_file_that_cannot_serve_fails_naming_field_and_path(
    tmp_path: Path, fields: dict[str, str], problem: str
) -> None:
    paths = {
        "SECRET_FILE": str(secret_file(tmp_path)),
        "MISSING": str(tmp_path / "missing"),
        "EMPTY": str(secret_file(tmp_path, "\n")),
    }
    fields = {k: paths.get(v, v) for k, v in fields.items()}
    for placeholder, path in paths.items():
        problem = problem.replace(placeholder, path)
    with pytest.raises(ConfigError, match=r"webhook\.receivers\.0: .*receiver ops: ") as caught:
        load_config(env={}, overrides=receiver(**fields))
    assert problem in str(caught.value)


def test_kafka_passwords_come_from_files_or_the_environment_as_text(tmp_path: Path) -> None:
    options = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "finsentry",
        "sasl_plain_password_file": str(secret_file(tmp_path)),
    }
    config = load_config(env={}, overrides={"kafka.client_options": options})
    assert config.kafka.client_options["sasl_plain_password"] == SECRET
    assert "sasl_plain_password_file" not in config.kafka.client_options  # not for kafka-python
    env = {"FINSENTRY_KAFKA__CLIENT_OPTIONS__SSL_PASSWORD": "0123"}
    assert load_config(env=env).kafka.client_options == {"ssl_password": "0123"}
    assert SECRET not in repr(config) and SECRET not in repr(config.kafka)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"ssl_password": "x", "ssl_password_file": "FILE"},
            "set client_options.ssl_password or ssl_password_file, not both",
        ),
        (
            {"sasl_plain_password_file": "MISSING"},
            "client_options.sasl_plain_password_file: cannot read MISSING",
        ),
        ({"sasl_plain_password": 123}, "client_options.sasl_plain_password must be a string"),
        ({"ssl_key_password_file": "FILE"}, "ssl_key_password_file"),  # no such option
    ],
)
def test_kafka_secret_options_that_cannot_serve_fail_naming_the_option(
    tmp_path: Path, options: dict[str, Any], problem: str
) -> None:
    paths = {"FILE": str(secret_file(tmp_path)), "MISSING": str(tmp_path / "missing")}
    options = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    for placeholder, path in paths.items():
        problem = problem.replace(placeholder, path)
    with pytest.raises(ConfigError, match=r"invalid config: kafka: ") as caught:
        load_config(env={}, overrides={"kafka.client_options": options})
    assert problem in str(caught.value)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """The configs `finsentry run` would start jobs with; no job is started."""
    configs: list[Config] = []
    monkeypatch.setattr(job_cli, "execute", lambda config, args: configs.append(config) or 0)
    monkeypatch.delenv(job_cli.SECRET_ENV, raising=False)
    return configs


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    events = tmp_path / "events.jsonl"
    events.touch()
    return ["run", "--input", str(events), "--webhook-url", "http://127.0.0.1:9/h", *extra]


def test_the_cli_secret_comes_from_a_file_then_the_environment(
    tmp_path: Path, started: list[Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret_file(tmp_path)
    assert main(run_args(tmp_path, "--webhook-secret-file", str(path))) == 0
    monkeypatch.setenv(job_cli.SECRET_ENV, "from-the-environment")
    assert main(run_args(tmp_path)) == 0
    assert main(run_args(tmp_path, "--webhook-secret-file", str(path))) == 0  # flags win
    assert [the_secret(c) for c in started] == [SECRET, "from-the-environment", SECRET]


def test_the_cli_secret_flag_still_works_but_warns(
    tmp_path: Path, started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run_args(tmp_path, "--webhook-secret", "on-the-command-line")) == 0
    assert [the_secret(c) for c in started] == ["on-the-command-line"]
    assert "--webhook-secret shows in ps" in capsys.readouterr().err


def test_the_cli_refuses_a_secret_twice_or_a_secret_file_for_no_receiver(
    tmp_path: Path, started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(secret_file(tmp_path))
    with pytest.raises(SystemExit):
        main(run_args(tmp_path, "--webhook-secret-file", path, "--webhook-secret", "x"))
    assert "not allowed with argument" in capsys.readouterr().err
    events = tmp_path / "events.jsonl"
    assert main(["run", "--input", str(events), "--webhook-secret-file", path]) == 2
    assert "--webhook-secret-file needs --webhook-url" in capsys.readouterr().err
    assert main(run_args(tmp_path, "--webhook-secret-file", str(tmp_path / "missing"))) == 2
    assert f"secret_file: cannot read {tmp_path / 'missing'}" in capsys.readouterr().err
    assert started == []

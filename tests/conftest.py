"""Shared fixtures: the real default model is loaded once per test session; a job that
names no state directory keeps its state in a temporary one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flows.config import load_config
from flows.models import build_chain
from processors.chain.chain import Chain

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_chain() -> Chain:
    """The configured default chain (topic, sentiment, entities) on the real default model."""
    return build_chain(load_config(env={}))


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """$XDG_STATE_HOME for the whole session (jobs in subprocesses inherit it), so that no
    test writes into, or reads what is left in, the user's ~/.local/state/finsentry."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
        yield

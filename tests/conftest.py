"""Shared fixtures: the real default model is loaded once per test session."""

from __future__ import annotations

import os

import pytest

from flows.config import load_config
from flows.models import build_chain
from processors.chain.chain import Chain

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_chain() -> Chain:
    """The configured default chain (topic, then sentiment) on the real default model."""
    return build_chain(load_config(env={}))

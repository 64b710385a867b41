"""Process settings for long runs: collector thresholds, trimming freed C memory."""

from __future__ import annotations

import gc
import platform
import threading

import pytest

from flows.runtime import YOUNG_COLLECTION_EVERY, trim_freed_memory_every, tune_garbage_collector


def test_the_collector_runs_less_often_and_skips_what_start_up_loaded() -> None:
    thresholds = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_is_trimmed_in_the_background_on_glibc() -> None:
    assert trim_freed_memory_every(60.0)
    assert any(t.name == "finsentry-malloc-trim" and t.daemon for t in threading.enumerate())

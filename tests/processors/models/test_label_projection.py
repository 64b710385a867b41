"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

import numpy as np
import pytest

from processors.models.huggingface import label_projection


def test_label_projection_sums_and_rejects_unknown_labels() -> None:
    m = label_projection(
        ["neg", "NEG2", "pos"],
        ["negative", "positive"],
        {"neg": "negative", "neg2": "negative", "pos": "positive"},
    )
    assert (np.array([[0.2, 0.3, 0.5]]) @ m).tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="LABEL_1"):
        label_projection(["LABEL_0", "LABEL_1"], ["negative", "positive"], {"LABEL_0": "negative"})

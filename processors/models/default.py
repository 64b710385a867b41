"""The offline default: one sentence-encoder pass, and a small head per task on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from processors.models.base import Model, ModelLoadError
from processors.models.heads import ClassifierHeads


class Encoder(Protocol):
    """What the default model runs on: texts in, pooled features out.

    `SentenceEncoder` (torch) and `OnnxEncoder` (ONNX Runtime) both are; the caller
    picks and builds one, so the model does not switch between runtimes itself.
    """

    model_id: str
    pooling: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled float32 features [n, dim] on CPU, rows in the order given."""
        ...


class DefaultModel(Model):
    """A sentence encoder's features with a small trained head per task.

    The encoder pass is the expensive part, so it runs once per batch for all heads;
    the results of the latest pass are kept until the next pass replaces them.
    """

    model_id = "finsentry-default"
    tasks = ("topic", "sentiment")

    def __init__(self, encoder: Encoder, heads: ClassifierHeads) -> None:
        # The encoder must pool features exactly as they were pooled for training.
        if (encoder.pooling, encoder.dim) != (heads.pooling, heads.dim):
            raise ModelLoadError(
                f"encoder {encoder.model_id} pools {encoder.pooling!r} to dim {encoder.dim}; "
                f"the heads want {heads.pooling!r} and dim {heads.dim}"
            )
        self.encoder = encoder
        self.heads = heads
        self._latest: dict[str, dict[str, np.ndarray]] = {}

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        # A local reference: workers of one process share this model, and another
        # worker's pass may replace `_latest` while this one reads.
        latest = self._latest
        if any(text not in latest for text in texts):
            latest = self._latest = self._run(texts)
        return np.stack([latest[text][task] for text in texts])

    def _run(self, texts: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        features = self.encoder.encode(list(texts))
        probabilities = {t: p.cpu().numpy() for t, p in self.heads.predict(features).items()}
        return {
            text: {task: rows[i] for task, rows in probabilities.items()}
            for i, text in enumerate(texts)
        }

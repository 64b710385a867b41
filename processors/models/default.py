"""The offline default: frozen all-MiniLM-L6-v2 features and a small head per task."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from processors.encoder import SentenceEncoder
from processors.heads import ClassifierHeads
from processors.models.base import Model


class DefaultModel(Model):
    """Frozen all-MiniLM-L6-v2 features with a small trained head per task.

    The encoder pass is the expensive part, so it runs once per batch for all heads;
    the results of the latest pass are kept until the next pass replaces them.
    """

    model_id = "finsentry-default"
    tasks = ("topic", "sentiment")

    def __init__(
        self,
        heads_path: str | Path | None = None,
        device: str = "auto",
        max_tokens: int = 128,
        batch_size: int = 256,
    ) -> None:
        self.heads = ClassifierHeads.load(heads_path)  # None: the committed default
        # The encoder must pool features exactly as they were pooled for training.
        self.encoder = SentenceEncoder(
            device=device,
            max_tokens=max_tokens,
            batch_size=batch_size,
            pooling=self.heads.pooling,
        )
        self._latest: dict[str, dict[str, np.ndarray]] = {}

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        if any(text not in self._latest for text in texts):
            self._latest = self._run(texts)
        return np.stack([self._latest[text][task] for text in texts])

    def _run(self, texts: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        features = self.encoder.encode(list(texts))
        probabilities = {t: p.cpu().numpy() for t, p in self.heads.predict(features).items()}
        return {
            text: {task: rows[i] for task, rows in probabilities.items()}
            for i, text in enumerate(texts)
        }

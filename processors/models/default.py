"""The offline default: frozen all-MiniLM-L6-v2 features and a small head per task."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from processors.encoder import SentenceEncoder
from processors.heads import ClassifierHeads
from processors.models.base import Model

DEFAULT_HEADS = Path(__file__).parents[1] / "weights" / "default_heads.safetensors"


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
        self.encoder = SentenceEncoder(device=device, max_tokens=max_tokens, batch_size=batch_size)
        self.heads = ClassifierHeads.load(heads_path or DEFAULT_HEADS)
        self._latest: dict[str, dict[str, np.ndarray]] = {}

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        if any(text not in self._latest for text in texts):
            self._latest = self._run(texts)
        return np.stack([self._latest[text][task] for text in texts])

    def _run(self, texts: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        features = self.encoder.encode(list(texts))
        with torch.inference_mode():
            probabilities = {t: p.numpy() for t, p in self.heads.predict(features).items()}
        return {
            text: {task: rows[i] for task, rows in probabilities.items()}
            for i, text in enumerate(texts)
        }

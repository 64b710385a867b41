"""The offline default: frozen all-MiniLM-L6-v2 features and a small head per task."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from processors.encoder import SentenceEncoder
from processors.heads import ClassifierHeads, heads_path_for
from processors.models.base import Model

if TYPE_CHECKING:
    from processors.onnx import OnnxEncoder


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
        *,
        dtype: str = "auto",
        max_batch_tokens: int | None = None,
        compile: bool = False,
        encoder: str | Path | None = None,
        backend: str = "torch",
        onnx_path: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        # None: the committed heads, or those trained with a fine-tuned `encoder`.
        self.heads = ClassifierHeads.load(heads_path or heads_path_for(encoder))
        # The encoder must pool features exactly as they were pooled for training.
        self.encoder: SentenceEncoder | OnnxEncoder
        if backend == "onnx":  # CPU only: ONNX Runtime, int8 weights
            from processors.onnx import load_onnx_encoder

            self.encoder = load_onnx_encoder(
                onnx_path,
                encoder,
                max_tokens=max_tokens,
                batch_size=batch_size,
                pooling=self.heads.pooling,
                num_threads=threads,
                max_batch_tokens=max_batch_tokens,
            )
        else:
            self.encoder = SentenceEncoder(
                encoder,
                device=device,
                max_tokens=max_tokens,
                batch_size=batch_size,
                pooling=self.heads.pooling,
                dtype=dtype,
                max_batch_tokens=max_batch_tokens,
                compile=compile,
            )
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

"""Any Hugging Face sequence-classification model, mapped onto canonical labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from processors.batching import length_sorted_batches
from processors.encoder import pick_device
from processors.labels import LABELS
from processors.models.base import Model


class HuggingFaceModel(Model):
    """Any Hugging Face sequence-classification model, by hub id or local path.

    `label_map` maps the model's own label names (case-insensitive) onto canonical
    labels; labels that map to the same canonical label add up. Without a map, the
    model's labels must already be canonical names.
    """

    def __init__(
        self,
        model: str,
        task: str,
        label_map: Mapping[str, str] | None = None,
        device: str = "auto",
        max_tokens: int = 256,
        batch_size: int = 64,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_id = model
        self.tasks = (task,)
        self.device = pick_device(device)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.network = AutoModelForSequenceClassification.from_pretrained(model)
        self.network.to(self.device).eval()
        own = [self.network.config.id2label[i] for i in range(self.network.config.num_labels)]
        self.projection = torch.from_numpy(label_projection(own, LABELS[task], label_map))

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.projection.shape[1]), dtype=np.float32)
        with torch.inference_mode():
            for indices in length_sorted_batches(texts, self.batch_size):
                encoded = self.tokenizer(
                    [texts[i] for i in indices],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.network(**encoded).logits.float()
                out[indices] = (logits.softmax(dim=-1).cpu() @ self.projection).numpy()
        return out


def label_projection(
    own_labels: Sequence[str],
    canonical: Sequence[str],
    label_map: Mapping[str, str] | None,
) -> np.ndarray:
    """A 0/1 matrix that sums a model's label probabilities into canonical labels.

    >>> label_projection(["Bearish", "Bullish", "Neutral"], ["negative", "neutral", "positive"],
    ...                  {"bearish": "negative", "bullish": "positive", "neutral": "neutral"})
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    lookup = {k.lower(): v for k, v in (label_map or {}).items()}
    matrix = np.zeros((len(own_labels), len(canonical)), dtype=np.float32)
    for row, own in enumerate(own_labels):
        target = lookup.get(own.lower(), own.lower() if not lookup else None)
        if target not in canonical:
            raise ValueError(
                f"model label {own!r} maps to {target!r}, which is not one of {list(canonical)}"
            )
        matrix[row, canonical.index(target)] = 1.0
    return matrix

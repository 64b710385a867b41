"""The model contract: texts in, probabilities over one task's canonical labels out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class Model(ABC):
    """A classifier behind a processor, answering in canonical labels."""

    model_id: str
    tasks: tuple[str, ...]

    @abstractmethod
    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        """Rows: texts in order; columns: `LABELS[task]` in order; rows sum to 1."""


class ModelLoadError(ValueError):
    """A configured model that cannot be loaded, or whose labels cannot be mapped."""

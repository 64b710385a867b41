"""The models behind the classifying processors, one per module behind `Model`.

`DefaultModel` is the offline default: one MiniLM encoder pass feeds both the topic
and the sentiment head. `HuggingFaceModel` wraps any sequence-classification model
(hub id or local path) with a map from its labels to the canonical ones. Both
import torch lazily, so code that only handles messages stays light.
"""

from processors.models.base import Model

__all__ = ["Model"]

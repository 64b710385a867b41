"""The models behind the classifying processors, one per module behind `Model`.

`DefaultModel` is the offline default: one MiniLM encoder pass feeds both the topic
and the sentiment head. `HuggingFaceModel` wraps any sequence-classification model
(hub id or local path) with a map from its labels to the canonical ones, and
`ZeroShotModel` turns any NLI model into a classifier over labels described in the
config. All import torch lazily, so code that only handles messages stays light.
"""

from processors.models.base import Model, ModelLoadError

__all__ = ["Model", "ModelLoadError"]

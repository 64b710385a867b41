"""Any Hugging Face sequence-classification model, mapped onto canonical labels."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from processors.envelope.labels import LABELS
from processors.models.base import Model, ModelLoadError
from processors.models.batching import MicroBatchRunner, place
from processors.models.encoder import pick_device, pick_dtype

log = logging.getLogger(__name__)

# Tokenizers without a known limit report a huge `model_max_length`; ignore those.
_NO_LIMIT = 1_000_000


class HuggingFaceModel(Model):
    """Any Hugging Face sequence-classification model, by hub id or local path.

    `label_map` maps the model's own label names (case-insensitive) onto canonical
    labels; labels that map to the same canonical label add up, and canonical labels
    no model label maps to get probability 0. Without a map, the model's labels must
    already be canonical names.
    """

    def __init__(
        self,
        model: str,
        task: str,
        label_map: Mapping[str, str] | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_tokens: int = 128,
        max_batch_tokens: int | None = None,
        batch_size: int = 256,
        compile: bool = False,
    ) -> None:
        self.model_id = model
        self.tasks = (task,)
        tokenizer, network = load_classifier(model)
        try:
            projection = label_projection(own_labels(network), LABELS[task], label_map)
        except ValueError as exc:
            raise ModelLoadError(f"model {model!r}: {exc}") from None
        self.projection = torch.from_numpy(projection)
        self.runner = classifier_runner(
            tokenizer,
            network,
            device=device,
            dtype=dtype,
            max_tokens=max_tokens,
            max_batch_tokens=max_batch_tokens,
            batch_size=batch_size,
            compile=compile,
        )

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        return (self.runner.run(texts).softmax(-1) @ self.projection).numpy()


def load_classifier(model: str) -> tuple[Any, torch.nn.Module]:
    """Tokenizer and network, from a local directory or the cache before the hub.

    Looking locally first means a cached model starts without any network traffic
    (and without the hub's retries when it cannot be reached). Every failure becomes
    a `ModelLoadError` naming the model.
    """
    from huggingface_hub import constants

    try:
        return _load(model, local_only=True)
    except OSError as exc:  # neither a local directory nor in the cache
        if Path(model).exists() or constants.HF_HUB_OFFLINE:
            raise _load_error(model, exc) from exc
    except Exception as exc:
        raise _load_error(model, exc) from exc
    log.warning("model %s is not in the local cache: downloading it from the hub", model)
    try:
        return _load(model, local_only=False)
    except Exception as exc:
        raise _load_error(model, exc) from exc


def _load(model: str, *, local_only: bool) -> tuple[Any, torch.nn.Module]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local_only)
    network = AutoModelForSequenceClassification.from_pretrained(model, local_files_only=local_only)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Decoder-style classifiers ship without a pad token; batching needs one.
        tokenizer.pad_token = tokenizer.eos_token
        network.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, network


def _load_error(model: str, exc: Exception) -> ModelLoadError:
    if model.startswith(("/", ".")) and not Path(model).exists():
        return ModelLoadError(f"cannot load model {model!r}: no such directory")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"cannot load model {model!r}: {reason} (a hub id must be in the Hugging Face "
        f"cache when the hub cannot be reached: fetch it once with `hf download {model}`, "
        "or give a local directory)"
    )


def classifier_runner(
    tokenizer: Any,
    network: torch.nn.Module,
    *,
    device: str,
    dtype: str,
    max_tokens: int,
    max_batch_tokens: int | None,
    batch_size: int,
    compile: bool,
) -> MicroBatchRunner:
    """The network placed on its device, behind a runner that returns float32 logits."""
    where = pick_device(device)
    num_labels = int(network.config.num_labels)
    placed = place(network, where, pick_dtype(dtype, where), compile)
    limit = tokenizer.model_max_length
    return MicroBatchRunner(
        tokenizer,
        lambda inputs: placed(**inputs).logits.float(),
        num_labels,
        where,
        max_tokens=min(max_tokens, limit) if limit < _NO_LIMIT else max_tokens,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=batch_size,
    )


def own_labels(network: torch.nn.Module) -> list[str]:
    """The network's label names, in its output order."""
    config = network.config
    return [config.id2label[i] for i in range(config.num_labels)]


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
    unknown = sorted(k for k in label_map or {} if k.lower() not in {o.lower() for o in own_labels})
    if unknown:
        raise ValueError(f"label_map names {unknown}, not labels of the model: {list(own_labels)}")
    matrix = np.zeros((len(own_labels), len(canonical)), dtype=np.float32)
    for row, own in enumerate(own_labels):
        target = lookup.get(own.lower(), own.lower() if not lookup else None)
        if target not in canonical:
            raise ValueError(
                f"model label {own!r} maps to {target!r}, which is not one of {list(canonical)}"
            )
        matrix[row, canonical.index(target)] = 1.0
    return matrix

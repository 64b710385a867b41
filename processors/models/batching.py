"""The one micro-batch runner every transformer model uses, on CPU or GPU.

Texts are tokenised once, up front, on the CPU; then they run shortest first in
micro-batches that each pad to their own longest member, sized by a budget of padded
tokens rather than a count, so a batch of tweets and a batch of articles cost about the
same. On CUDA the next micro-batch is built in pinned memory and copied without
blocking while the GPU still works on the previous one, and a micro-batch that runs out
of memory is split in half and retried, down to single texts, so no text is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

# Padded tokens per micro-batch when the config does not say. CPU: measured with the
# default model on the demo headlines (13 tokens on average) and the validation tweets
# (44): 1024 to 4096 are within 10% of each other and of the best, 8192 and more are
# 20-35% slower (activations leave the caches); 4096 did best with two threads, and
# more threads should favour larger batches. CUDA (not measured here): 256 texts of
# 128 tokens, the default cap and truncation, so that the budget binds only when
# `batch_size` is raised; base-size models stay well inside 8 GB at that size.
CPU_BATCH_TOKENS = 4096
CUDA_BATCH_TOKENS = 32768

log = logging.getLogger(__name__)

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def default_batch_tokens(device: torch.device) -> int:
    """The padded-token budget for `device` when none is configured."""
    return CUDA_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS


def token_budget_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int | None = None
) -> list[list[int]]:
    """Indices, shortest first, grouped so rows x longest stays within the budget.

    A text longer than the budget runs alone rather than not at all.

    >>> token_budget_batches([5, 1, 3, 3], max_batch_tokens=6)
    [[1, 2], [3], [0]]
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending: the newcomer is the longest, so it sets the padded width.
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * lengths[i] > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class MicroBatchRunner:
    """Runs `forward` over token-budgeted micro-batches; rows come back in input order.

    `forward` takes the model inputs (on the device) and returns one float row per
    text, `width` wide. `_oom_cap` is a test hook: a micro-batch of more padded tokens
    raises the real `torch.cuda.OutOfMemoryError`, so the splitting is tested on CPU.
    """

    def __init__(
        self,
        tokenizer: Any,
        forward: Forward,
        width: int,
        device: torch.device,
        *,
        max_tokens: int,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.forward = forward
        self.width = width
        self.device = device
        self.max_tokens = max_tokens
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(device)
        self.max_batch_size = max_batch_size
        self.splits = 0  # micro-batches split in half after running out of memory
        self._oom_cap: int | None = None
        self._pad_id = tokenizer.pad_token_id or 0
        self._pad_left = tokenizer.padding_side == "left"

    def run(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> torch.Tensor:
        """Float32 rows [len(texts), width] on the CPU; `pairs` are second segments.

        With pairs (premise, hypothesis), only the first segment is truncated.
        """
        if not texts:
            return torch.empty((0, self.width), dtype=torch.float32)
        encoded = self.tokenizer(
            list(texts),
            None if pairs is None else list(pairs),
            truncation=True if pairs is None else "only_first",
            max_length=self.max_tokens,
            return_attention_mask=False,
        )
        keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
        columns = {k: encoded[k] for k in keys}
        lengths = [len(ids) for ids in columns["input_ids"]]
        done: list[tuple[list[int], torch.Tensor]] = []
        with torch.inference_mode():
            for indices in token_budget_batches(
                lengths, self.max_batch_tokens, self.max_batch_size
            ):
                self._run(columns, lengths, indices, done)
            order = torch.tensor([i for indices, _ in done for i in indices])
            rows = torch.cat([r for _, r in done]).float().cpu()  # the only sync point
        out = torch.empty_like(rows)
        out[order] = rows
        return out

    def _run(
        self,
        columns: dict[str, list[list[int]]],
        lengths: list[int],
        indices: list[int],
        done: list[tuple[list[int], torch.Tensor]],
    ) -> None:
        try:
            inputs = self._collate(columns, lengths, indices)
            done.append((indices, self.forward(inputs)))
            return
        except torch.cuda.OutOfMemoryError:
            if len(indices) == 1:
                raise
        # Out of the except block, so its traceback no longer pins the failed tensors.
        self.splits += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        # Later batches start below the size that failed instead of failing again.
        width = max(lengths[i] for i in indices)
        self.max_batch_tokens = min(self.max_batch_tokens, max(1, len(indices) * width // 2))
        log.warning(
            "out of memory on %d texts x %d tokens: split in half and retried; "
            "micro-batches now hold at most %d padded tokens",
            len(indices),
            width,
            self.max_batch_tokens,
        )
        half = len(indices) // 2
        self._run(columns, lengths, indices[:half], done)
        self._run(columns, lengths, indices[half:], done)

    def _collate(
        self, columns: dict[str, list[list[int]]], lengths: list[int], indices: list[int]
    ) -> dict[str, torch.Tensor]:
        """Pad to this micro-batch's longest text and move it to the device."""
        width = max(lengths[i] for i in indices)
        if self._oom_cap is not None and len(indices) * width > self._oom_cap:
            raise torch.cuda.OutOfMemoryError(
                f"test cap: {len(indices)} x {width} tokens > {self._oom_cap}"
            )
        arrays = {
            k: np.full((len(indices), width), self._pad_id if k == "input_ids" else 0, np.int64)
            for k in columns
        }
        mask = np.zeros((len(indices), width), np.int64)
        for row, i in enumerate(indices):
            span = slice(width - lengths[i], width) if self._pad_left else slice(0, lengths[i])
            for k, values in columns.items():
                arrays[k][row, span] = values[i]
            mask[row, span] = 1
        arrays["attention_mask"] = mask
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if self.device.type == "cuda":
            return {
                k: t.pin_memory().to(self.device, non_blocking=True) for k, t in tensors.items()
            }
        return tensors


def place(
    network: torch.nn.Module, device: torch.device, dtype: torch.dtype, compile: bool
) -> torch.nn.Module:
    """The network on `device` in `dtype`, in eval mode, compiled if asked.

    Shapes vary with every micro-batch, so compilation is dynamic from the start
    instead of recompiling for the first few shapes it meets.
    """
    network = network.to(device=device, dtype=dtype).eval()
    return torch.compile(network, dynamic=True) if compile else network

"""Train the default model: its encoder's top layers fine-tuned with both heads.

Recipe ("top-k layers fine-tune with int8 deltas"): the embeddings and the lowest
`6 - k` layers stay frozen, so their outputs for every training text are computed
once and cached; each step then runs (forward and backward) only the top `k` layers,
the pooling and the heads, so several epochs fit a CPU core in under an hour. The file
stores the trained layers as int8 *differences* from the packaged weights, one scale
per row (`quantize_deltas`; 3 layers: ~5.3 MB, where fp16 would take 10.6), the heads
in fp32, one temperature per task (fitted on a part held apart from
training) and what is needed to rebuild the encoder: a `finsentry-adapted/1` file,
which `ClassifierHeads.load` reads and `SentenceEncoder(deltas=...)` serves.

Data: topic trains on the tweets' topic file; sentiment on the tweets' sentiment file
plus the training part of each news source (`news_split`; its 15% validation part is
for reporting only), each source repeated per epoch as `DEFAULT_NEWS_WEIGHT` says.
`held_frac` of every training part, stratified and seeded, is held apart to pick the
checkpoint (end of each epoch) and fit the temperatures.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from processors.envelope.labels import LABELS
from processors.models.encoder import (
    DEFAULT_POOLING,
    MODEL_ID,
    SCALE_SUFFIX,
    default_model_dir,
    dequantize_deltas,
    load_encoder,
    parse_pooling,
    pool,
)
from processors.models.heads import ADAPTED_FORMAT, DELTA, HEADS, ClassifierHeads
from processors.training.finetune import _lr_factor, balanced_weights, length_grouped_batches
from processors.training.train import (
    NEWS_SOURCES,
    TASKS,
    _sha256,
    load_labelled,
    news_split,
    scores,
    stratified_split,
)

log = logging.getLogger(__name__)

# Repeats per epoch of each sentiment source. Tweets twice: on the held-apart slice it
# lifted tweet sentiment (0.829 -> 0.834 accuracy) and news alike, against once.
DEFAULT_NEWS_WEIGHT: Mapping[str, int] = {"sentfin": 1, "finentity": 3, "tweets": 2}
STANDARDISE_ROWS = 4000  # rows sampled to fix a fresh head's input shift/scale
SAVE_SECONDS = 60.0  # kept free of the wall-clock budget: held-apart scoring, temperatures, save
Split = dict[str, tuple[list[str], np.ndarray]]


def _mask4d(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def run_layers(
    layers: Sequence[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Token states through BERT layers, padding masked out of attention."""
    ext = _mask4d(mask, hidden.dtype)
    for layer in layers:
        out = layer(hidden, attention_mask=ext)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


@torch.inference_mode()
def cache_lower(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    frozen: int,
    max_tokens: int,
    batch_size: int = 128,
) -> list[torch.Tensor]:
    """Each text's token states after the embeddings and the lowest `frozen` layers."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
        hidden = model.embeddings(
            input_ids=batch["input_ids"], token_type_ids=torch.zeros_like(batch["input_ids"])
        )
        hidden = run_layers(model.encoder.layer[:frozen], hidden, batch["attention_mask"])
        for j, i in enumerate(idx):
            out[i] = hidden[j, : len(ids[i])].clone()
    return out


def collate(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached states padded to the longest in the batch: (hidden [b, L, d], mask [b, L])."""
    width = max(len(s) for s in states)
    hidden = torch.zeros(len(states), width, states[0].shape[-1])
    mask = torch.zeros(len(states), width, dtype=torch.long)
    for j, s in enumerate(states):
        hidden[j, : len(s)] = s
        mask[j, : len(s)] = 1
    return hidden, mask


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature minimising the NLL of softmax(logits / T) (LBFGS on log T)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


class _Top:
    """The trained layers, pooling and heads: cached lower states in, logits out."""

    def __init__(
        self, layers: torch.nn.ModuleList, heads: ClassifierHeads, pooling: Sequence[str]
    ) -> None:
        self.layers, self.heads, self.pooling = layers, heads, tuple(pooling)

    def features(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        hidden, mask = collate(states)
        return pool(run_layers(self.layers, hidden, mask), mask, self.pooling)

    def logits(
        self, task: str, states: Sequence[torch.Tensor], batch_size: int = 256
    ) -> torch.Tensor:
        """Logits of every state, length-sorted batches, rows in the order given."""
        order = sorted(range(len(states)), key=lambda i: len(states[i]))
        out = torch.zeros(len(states), len(LABELS[task]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                out[idx] = self.heads.heads[task](self.features([states[i] for i in idx]))
        return out


def _held_scores(
    top: _Top,
    sources: Mapping[str, str],
    cache: Mapping[str, Mapping[str, list[torch.Tensor]]],
    parts: Mapping[str, Split],
) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Uncalibrated scores on the held-apart parts per source and for all sentiment
    sources together, and the logits and labels per source."""
    out: dict[str, Any] = {}
    by_source: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, task in sources.items():
        lg = top.logits(task, cache[name]["held"])
        by_source[name] = (lg, torch.from_numpy(parts[name]["held"][1]))
        out[name] = scores(lg.softmax(-1).numpy(), by_source[name][1].numpy())
    lg, y = _by_task(sources, by_source)["sentiment"]
    out["sentiment_all"] = scores(lg.softmax(-1).numpy(), y.numpy())
    return out, by_source


def _by_task(
    sources: Mapping[str, str], by_source: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        task: (
            torch.cat([by_source[n][0] for n, t in sources.items() if t == task]),
            torch.cat([by_source[n][1] for n, t in sources.items() if t == task]),
        )
        for task in TASKS
    }


def quantize_deltas(deltas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Matrix deltas as int8 with one fp32 scale per row (absmax / 127), vectors as fp16:
    what `dequantize_deltas` reads. A layer costs 1.8 MB instead of 3.5 MB in fp16, so
    three layers fit the 10 MB the committed file may take; the rounding error is at
    most 1/254 of a row's largest change."""
    out: dict[str, torch.Tensor] = {}
    for name, delta in deltas.items():
        if delta.dim() < 2:
            out[name] = delta.half()
            continue
        scale = delta.abs().amax(dim=1).float().clamp(min=1e-12) / 127
        out[name] = (delta / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        out[name + SCALE_SUFFIX] = scale
    return out


def _check_deltas(deltas: Mapping[str, torch.Tensor], frozen: int, path: Path) -> None:
    """The cache sees only frozen layers and only trained layers are written: an earlier
    run's deltas must lie in the layers trained now."""
    outside = [k for k in deltas if not k.startswith("encoder.layer.") or _layer(k) < frozen]
    if outside:
        raise ValueError(f"{path} changes parameters this run keeps frozen: {outside[:3]}")


def _layer(name: str) -> int:
    return int(name.split(".")[2])


def train_adapted(
    data_dir: str | Path,
    out_path: str | Path,
    seed: int = 0,
    *,
    trained_layers: int = 3,
    epochs: float = 3.0,
    batch_size: int = 32,
    max_tokens: int = 64,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup: float = 0.06,
    balance: float = 0.5,
    news_weight: Mapping[str, int] | None = None,
    held_frac: float = 0.1,
    max_minutes: float = 120.0,
    limit: int | None = None,
    threads: int | None = None,
    init_from: str | Path | None = None,
    hidden: int = 256,
    dropout: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the top `trained_layers` layers and both heads, fit the temperatures, write
    one `finsentry-adapted/1` file to `out_path`; returns the figures stored in it.

    `data_dir` holds the tweets' `{task}_train.csv` (the news CSVs sit beside it, see
    `news_dir`). Training stops after `epochs` (fractions allowed) or when `max_minutes`
    run out, whichever is nearer; the learning rate warms up over the first `warmup`
    of training and then decays linearly over the nearer bound. Deterministic for a
    seed when bounded by epochs. `limit` caps the rows of every file (tests).
    `init_from` continues from a file this function wrote (its deltas must lie in the
    layers trained now; the new deltas stay relative to the packaged weights).
    """
    started = time.monotonic()
    say = progress or log.info
    if threads:
        torch.set_num_threads(threads)
    news_weight = DEFAULT_NEWS_WEIGHT if news_weight is None else news_weight
    data_dir = Path(data_dir)
    base_dir = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    base = load_encoder(base_dir)
    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    n_layers = len(base.encoder.layer)
    if not 1 <= trained_layers <= n_layers:
        raise ValueError(f"trained_layers must be within 1..{n_layers}, not {trained_layers}")
    frozen = n_layers - trained_layers
    start_heads: ClassifierHeads | None = None
    model = base
    if init_from is not None:  # the cache sees only frozen layers: earlier deltas lie above
        start_heads = ClassifierHeads.load(init_from)
        _check_deltas(start_heads.encoder_deltas, frozen, Path(init_from))
        model = load_encoder(base_dir, start_heads.encoder_deltas)

    # ---- data: train / held-apart parts of every training file
    raw: dict[str, tuple[str, list[str], np.ndarray]] = {
        "topic": ("topic", *load_labelled(data_dir / "topic_train.csv", "topic")),
        "tweets": ("sentiment", *load_labelled(data_dir / "sentiment_train.csv", "sentiment")),
    }
    for source in NEWS_SOURCES:
        raw[source] = ("sentiment", *news_split(data_dir, source)["train"])
    sources = {name: task for name, (task, _, _) in raw.items()}
    parts: dict[str, Split] = {}
    for name, (_, texts, y) in raw.items():
        if limit:
            texts, y = texts[:limit], y[:limit]
        keep, held = stratified_split(y, held_frac, seed)
        parts[name] = {
            "train": ([texts[i] for i in keep], y[keep]),
            "held": ([texts[i] for i in held], y[held]),
        }
    cache = {
        name: {
            k: cache_lower(model, tokenizer, texts, frozen, max_tokens)
            for k, (texts, _) in split.items()
        }
        for name, split in parts.items()
    }
    cache_seconds = time.monotonic() - started
    say(f"cached the lowest {frozen} layers in {cache_seconds:.0f}s")

    pools: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}
    for task in TASKS:
        states: list[torch.Tensor] = []
        ys = []
        for name in (n for n, t in sources.items() if t == task):
            rep = news_weight.get(name, 1)
            states += cache[name]["train"] * rep
            ys.append(np.tile(parts[name]["train"][1], rep))
        pools[task] = (states, torch.from_numpy(np.concatenate(ys)))
    class_w = {t: balanced_weights(y, len(LABELS[t]), balance) for t, (_, y) in pools.items()}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        layers = model.encoder.layer[frozen:]
        heads = start_heads or ClassifierHeads(
            2 * model.config.hidden_size,
            hidden=hidden,
            dropout=dropout,
            pooling=DEFAULT_POOLING,
            model_id=MODEL_ID,
            max_tokens=max_tokens,
        )
        heads.max_tokens = max_tokens
        top = _Top(layers, heads, parse_pooling(heads.pooling))
        if start_heads is None:  # standardise on the base model's features
            for task, (states, _) in pools.items():
                sample = torch.randperm(len(states), generator=g)[:STANDARDISE_ROWS].tolist()
                with torch.inference_mode():
                    feats = [
                        top.features([states[i] for i in sample[s : s + 256]])
                        for s in range(0, len(sample), 256)
                    ]
                heads.heads[task].set_standardisation(torch.cat(feats))
        params = [p for layer in layers for p in layer.parameters()]
        opt = torch.optim.AdamW(
            [{"params": params, "lr": lr}, {"params": list(heads.parameters()), "lr": head_lr}],
            weight_decay=weight_decay,
        )
        per_epoch = sum(math.ceil(len(states) / batch_size) for states, _ in pools.values())
        total = max(1, round(epochs * per_epoch))
        budget = max_minutes * 60 - (time.monotonic() - started) - SAVE_SECONDS
        step, done, epoch, t0 = 0, 0.0, 0, time.monotonic()
        best: tuple[float, dict[str, torch.Tensor], int] | None = None
        history = []
        while done < 1.0:
            schedule = [
                (task, b)
                for task, (states, _) in pools.items()
                for b in length_grouped_batches([len(s) for s in states], batch_size, g)
            ]
            schedule = [schedule[i] for i in torch.randperm(len(schedule), generator=g).tolist()]
            layers.train()
            heads.train()
            running = dict.fromkeys(TASKS, 0.0)
            for task, idx in schedule:
                for group, base_lr in zip(opt.param_groups, (lr, head_lr), strict=True):
                    group["lr"] = base_lr * _lr_factor(done, warmup)
                states, y = pools[task]
                logits = heads.heads[task](top.features([states[i] for i in idx]))
                loss = torch.nn.functional.cross_entropy(logits, y[idx], weight=class_w[task])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                step += 1
                running[task] = 0.98 * running[task] + 0.02 * loss.item()
                done = max(step / total, (time.monotonic() - t0) / max(budget, 1e-9))
                if step % 200 == 0:
                    say(
                        f"step {step}/{total} {(time.monotonic() - started) / 60:.1f} min, loss "
                        f"topic {running['topic']:.3f} sentiment {running['sentiment']:.3f}"
                    )
                if done >= 1.0:
                    break
            epoch += 1
            layers.eval()
            heads.eval()
            held = _held_scores(top, sources, cache, parts)
            key = (
                held[0]["topic"]["accuracy"]
                + held[0]["sentiment_all"]["accuracy"]
                + held[0]["sentiment_all"]["macro_f1"]
            )
            history.append({"epoch": epoch, "step": step, **held[0]})
            say(f"epoch {epoch} held-apart: {json.dumps(history[-1])}")
            if best is None or key > best[0]:
                snapshot = {
                    **{f"top.{k}": v.clone() for k, v in layers.state_dict().items()},
                    **{f"heads.{k}": v.clone() for k, v in heads.state_dict().items()},
                }
                best = (key, snapshot, epoch)
        train_seconds = time.monotonic() - started
        assert best is not None
        layers.load_state_dict({k[4:]: v for k, v in best[1].items() if k.startswith("top.")})
        heads.load_state_dict({k[6:]: v for k, v in best[1].items() if k.startswith("heads.")})

    # ---- the deltas as served (int8), then held-apart scores and temperatures on them
    deltas = quantize_deltas(
        {
            k: v - base_state[k]
            for k, v in model.state_dict().items()
            if k.startswith("encoder.layer.") and _layer(k) >= frozen
        }
    )
    served = {k: base_state[k] + d for k, d in dequantize_deltas(deltas).items()}
    model.load_state_dict(served, strict=False)
    layers.eval()
    heads.eval()
    held_scores, by_source = _held_scores(top, sources, cache, parts)
    # ---- temperatures on the held-apart parts (sentiment: tweets and news together)
    by_task = _by_task(sources, by_source)
    temps = {t: fit_temperature(*by_task[t]) for t in TASKS}
    calibrated = {
        name: scores((lg / temps[sources[name]]).softmax(-1).numpy(), y.numpy())
        for name, (lg, y) in by_source.items()
    }
    figures = {
        "held_apart_uncalibrated": held_scores,
        "held_apart_calibrated": calibrated,
        "history": history,
        "training": {
            "seed": seed,
            "trained_layers": trained_layers,
            "epochs_run": round(step / per_epoch, 2),
            "best_epoch": best[2],
            "steps": step,
            "batch_size": batch_size,
            "max_tokens": max_tokens,
            "lr": lr,
            "head_lr": head_lr,
            "weight_decay": weight_decay,
            "warmup": warmup,
            "balance": balance,
            "news_weight": dict(news_weight),
            "held_frac": held_frac,
            "limit": limit,
            "init_from": str(init_from) if init_from else None,
            "cache_seconds": round(cache_seconds, 1),
            "train_seconds": round(train_seconds, 1),
        },
    }
    save_adapted(out_path, heads, deltas, temps, figures, frozen, n_layers)
    say(
        f"wrote {out_path} ({Path(out_path).stat().st_size / 1e6:.2f} MB), temperatures "
        f"{temps}, {(time.monotonic() - started) / 60:.1f} min"
    )
    return figures


def save_adapted(
    path: str | Path,
    heads: ClassifierHeads,
    deltas: Mapping[str, torch.Tensor],
    temperatures: Mapping[str, float],
    figures: Mapping[str, Any],
    frozen: int,
    n_layers: int,
) -> None:
    """Write the encoder deltas as given (`quantize_deltas`), fp32 heads and the metadata
    `ClassifierHeads.load` reads."""
    tensors = {f"{DELTA}{k}": v.contiguous() for k, v in deltas.items()}
    tensors |= {f"{HEADS}{k}": v.float().contiguous() for k, v in heads.state_dict().items()}
    meta = {
        "format": ADAPTED_FORMAT,
        "method": f"top-{n_layers - frozen} layers full fine-tune (layers {frozen}-"
        f"{n_layers - 1}), int8 deltas over base (fp32 scale per row; vectors fp16); "
        "embeddings and lower layers frozen",
        "base_model_id": MODEL_ID,
        "base_sha256": _sha256(default_model_dir() / "model.safetensors"),
        "pooling": heads.pooling,
        "max_tokens": str(heads.max_tokens),
        "labels": json.dumps(heads.labels),
        "heads": json.dumps(
            {
                "dim": heads.dim,
                "hidden": heads.hidden,
                "dropout": heads.dropout,
                "standardise": True,
                "activation": "gelu",
            }
        ),
        "temperatures": json.dumps(dict(temperatures)),
        "figures": json.dumps(figures),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)

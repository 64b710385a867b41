"""Fine-tune the default model's encoder end to end, together with both heads.

The frozen encoder tops out near 0.84 accuracy on either task; updating the encoder
itself lifts both. It must fit a CPU in minutes, so training is bounded by a
wall-clock budget as well as by epochs, and every step is made cheap: short
truncation, batches of similar length padded only to their longest member, frozen
embeddings (half the parameters). `freeze_layers` also freezes the lowest layers
(two: 16% more steps a minute); the defaults are those of the best 20-minute CPU run
measured (README, "Fine-tuning the encoder"). Class weights (`balance`) lift the rarer
sentiments' recall, which the macro-F1 target needs.
The heads start from the committed ones, trained on the same pooled features, so the
first steps refine a good classifier instead of undoing the encoder under a random one.
The result is a directory that config can name: the encoder in Hugging Face format
and `heads.safetensors` beside it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from processors.models.encoder import (
    SentenceEncoder,
    default_model_dir,
    parse_pooling,
    pick_device,
    pool,
)
from processors.models.heads import FINETUNED_HEADS, ClassifierHeads
from processors.training.train import TASKS, evaluate, label_ids, load_csv

log = logging.getLogger(__name__)

GROUP_BATCHES = 50  # batches per length-sorted chunk: similar lengths, still well mixed
SAVE_SECONDS = 10.0  # writing the model and reloading it for the final evaluation
DEFAULT_FINETUNED_DIR = Path.home() / ".cache" / "finsentry" / "finetuned"
# Sentiment is the harder target (frozen: 0.83 against topic's 0.84, and its macro-F1
# lags) and its texts are shorter, so its steps are cheaper: it gets two steps in three.
SENTIMENT_TWICE: Mapping[str, int] = {"topic": 1, "sentiment": 2}
WARM_STEPS = 5  # the first steps warm up threads and allocators: too slow to time
RATE_STEPS = 20  # steady steps timed before the evaluation's cost is estimated from them


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches whose members have similar lengths, so padding costs little.

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(sorted(b) for b in length_grouped_batches([5, 1, 4, 2], 2, g))
    [[0, 2], [1, 3]]
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = sorted(perm[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def balanced_weights(labels: torch.Tensor, classes: int, balance: float) -> torch.Tensor:
    """Per-class loss weights, frequency ** -balance, scaled so that the mean weight
    over the training rows is 1 (the loss keeps its scale and the learning rate fits).
    A class with no rows gets weight 0.

    >>> balanced_weights(torch.tensor([0, 0, 0, 1]), 3, 1.0)
    tensor([0.6667, 2.0000, 0.0000])
    """
    counts = torch.bincount(labels, minlength=classes).to(torch.float64)
    share = counts / counts.sum()
    weights = torch.where(share > 0, share.clamp_min(1e-12) ** -balance, 0.0)
    return (weights / (share * weights).sum()).to(torch.float32)


def _endless(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> Iterator[list[int]]:
    while True:
        yield from length_grouped_batches(lengths, batch_size, generator)


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of training, then linear decay to zero."""
    if progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / (1.0 - warmup))


def fine_tune(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    epochs: float = 2.0,
    max_minutes: float = 20.0,
    batch_size: int = 32,
    max_tokens: int = 64,
    lr: float = 5e-5,
    head_lr: float = 5e-4,
    warmup: float = 0.06,
    weight_decay: float = 0.01,
    freeze_layers: int = 0,
    balance: float = 0.5,
    steps_per_cycle: Mapping[str, int] = SENTIMENT_TWICE,
    limit: int | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune on `{task}_train.csv`, write `out_dir`, score it on `{task}_valid.csv`.

    Steps follow a fixed cycle of tasks (`steps_per_cycle` of each), every task's set
    cycling on its own. Training stops after `epochs` epochs or when the
    time left in `max_minutes` is what the final evaluation is expected to need,
    whichever comes first; the learning rate warms up and decays over whichever
    bound is nearer, so a cut-short run still ends at a low rate. `balance` weighs
    each class's loss by its training frequency to the power `-balance` (0: plain
    cross-entropy, 1: every class counts alike), trading a little accuracy for recall
    on the rarer classes, which macro-F1 rewards. `limit` reads only the first rows of
    each CSV (for tests). Returns the figures stored in the heads.
    """
    started = time.monotonic()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    say = progress or log.info
    torch_device = pick_device(device)
    source = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    heads = ClassifierHeads.load()  # warm start: the committed heads, same pooling
    parts = parse_pooling(heads.pooling)
    heads.max_tokens = max_tokens
    heads.model_id = out_dir.name

    train: dict[str, tuple[list[list[int]], torch.Tensor]] = {}
    eval_tokens = 0
    for task in TASKS:
        texts, names = load_csv(data_dir / f"{task}_train.csv", task)
        ids = tokenizer(texts[:limit], truncation=True, max_length=max_tokens)["input_ids"]
        train[task] = (ids, torch.from_numpy(label_ids(task, names[: len(ids)])))
        valid, _ = load_csv(data_dir / f"{task}_valid.csv", task)
        eval_tokens += sum(
            map(len, tokenizer(valid[:limit], truncation=True, max_length=max_tokens)["input_ids"])
        )
    class_weights = {
        task: balanced_weights(labels, len(heads.labels[task]), balance)
        for task, (_, labels) in train.items()
    }
    cycle = [task for task in TASKS for _ in range(steps_per_cycle[task])]
    # An epoch: the task that needs the most cycles to see its whole set has seen it once.
    per_epoch = len(cycle) * max(
        math.ceil(len(train[t][0]) / batch_size / steps_per_cycle[t]) for t in TASKS
    )
    total_steps = max(1, round(epochs * per_epoch))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = AutoModel.from_pretrained(source, local_files_only=True)
        frozen = [model.embeddings, *model.encoder.layer[:freeze_layers]]
        for module in frozen:
            module.requires_grad_(False)
        model.to(torch_device).train()
        heads.to(torch_device).train()
        groups = [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": lr},
            {"params": list(heads.parameters()), "lr": head_lr},
        ]
        opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
        streams = {
            task: _endless([len(x) for x in ids], batch_size, generator)
            for task, (ids, _) in train.items()
        }
        budget = max_minutes * 60.0
        step, done, losses = 0, 0.0, {t: 0.0 for t in TASKS}
        train_from = rate_from = time.monotonic()
        rate_tokens = 0
        while done < 1.0:
            for group, base in zip(opt.param_groups, (lr, head_lr), strict=True):
                group["lr"] = base * _lr_factor(done, warmup)
            task = cycle[step % len(cycle)]
            ids, labels = train[task]
            idx = next(streams[task])
            batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            batch = batch.to(torch_device)
            hidden = model(**batch).last_hidden_state
            logits = heads.heads[task](pool(hidden, batch["attention_mask"], parts))
            loss = torch.nn.functional.cross_entropy(
                logits, labels[idx].to(torch_device), weight=class_weights[task].to(torch_device)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            rate_tokens += int(batch["attention_mask"].numel())
            if step == WARM_STEPS:  # time the steady state only
                rate_from, rate_tokens = time.monotonic(), 0
            losses[task] = 0.9 * losses[task] + 0.1 * loss.item() if step > 2 else loss.item()
            now = time.monotonic()
            eval_seconds = 0.0
            if step >= WARM_STEPS + RATE_STEPS:  # inference: about a third of training per token
                eval_seconds = eval_tokens * (now - rate_from) / (3.0 * rate_tokens) + SAVE_SECONDS
            train_budget = budget - (train_from - started) - eval_seconds
            done = max(done, step / total_steps, (now - train_from) / max(train_budget, 1e-9))
            if step % 20 == 0 or done >= 1.0:
                say(
                    f"step {step}/{total_steps} ({step / per_epoch:.2f} epochs), "
                    f"{(now - started) / 60:.1f} min, loss topic {losses['topic']:.3f} "
                    f"sentiment {losses['sentiment']:.3f}"
                )
        train_seconds = time.monotonic() - started

    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    heads_path = out_dir / FINETUNED_HEADS
    heads.cpu().eval().save(heads_path)
    encoder = SentenceEncoder(
        out_dir, device, max_tokens, pooling=heads.pooling, batch_size=batch_size * 2
    )
    figures: dict[str, Any] = {}
    for task in TASKS:
        scores = evaluate(
            task,
            data_dir / f"{task}_valid.csv",
            heads_path,
            encoder,
            limit,
            cache_dir=None,
        )
        figures[task] = {"valid": {k: v for k, v in scores.items() if k != "task"}}
        say(f"{task} valid: {figures[task]['valid']}")
    figures["training"] = {
        "fine_tune": True,
        "steps": step,
        "epochs": round(step / per_epoch, 3),
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "device": str(torch_device),
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "lr": lr,
        "head_lr": head_lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "freeze_layers": freeze_layers,
        "balance": balance,
        "steps_per_cycle": dict(steps_per_cycle),
        "seed": seed,
    }
    heads.figures = figures
    heads.save(heads_path)
    return figures

"""Train and evaluate the default heads on the twitter-financial-news CSVs.

The encoder is frozen, so its features for a given CSV never change: they are
cached on disk and a re-train only fits the small heads (seconds, not minutes).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from processors.envelope.labels import DATASET_LABELS, LABELS
from processors.models.encoder import MODEL_ID, SentenceEncoder
from processors.models.heads import ClassifierHeads

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = tuple(LABELS)
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "finsentry" / "features"


def find_data_dir() -> Path:
    """The twitter-financial-news CSVs: $FINSENTRY_DATA, else `../shared/data` beside the
    working directory or the checkout."""
    env = os.environ.get("FINSENTRY_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data" / "twitter-financial-news"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no training data found: pass --data or set FINSENTRY_DATA")


def load_csv(path: str | Path, task: str | None = None) -> tuple[list[str], list[str]]:
    """Texts and canonical label names; the task is read from the file name if not given."""
    path = Path(path)
    task = task or next((t for t in DATASET_LABELS if path.name.startswith(t)), None)
    if task is None:
        raise ValueError(f"cannot tell the task of {path}; pass task=")
    id_to_name = DATASET_LABELS[task]
    texts: list[str] = []
    names: list[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.append(row["text"])
            names.append(id_to_name[int(row["label"])])
    return texts, names


def label_ids(task: str, names: Sequence[str]) -> np.ndarray:
    """Column index of each name in `LABELS[task]`, the heads' output order."""
    index = {name: i for i, name in enumerate(LABELS[task])}
    return np.array([index[n] for n in names], dtype=np.int64)


def load_labelled(path: str | Path, task: str) -> tuple[list[str], np.ndarray]:
    """Texts and label indices into `LABELS[task]` (the news CSVs share the tweets' ids)."""
    texts, names = load_csv(path, task)
    return texts, label_ids(task, names)


def stratified_split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) row indices: `frac` of every class held, chosen by a seeded shuffle.

    >>> kept, held = stratified_split(np.array([0, 0, 0, 0, 1, 1]), 0.5, 0)
    >>> len(held), sorted(set(kept) | set(held)) == list(range(6))
    (3, True)
    """
    rng = np.random.RandomState(seed)
    held = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rng.shuffle(rows)
        held.append(rows[: round(frac * len(rows))])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), held_idx), held_idx


NEWS_SOURCES: tuple[str, ...] = ("sentfin", "finentity")
NEWS_VALID_FRAC = 0.15
NEWS_SPLIT_SEED = 0  # fixed: the news validation rows never depend on the training seed


def news_dir(data_dir: str | Path) -> Path:
    """The news-sentiment CSVs, beside the twitter-financial-news folder."""
    return Path(data_dir).parent / "news-sentiment"


def news_split(data_dir: str | Path, source: str) -> dict[str, tuple[list[str], np.ndarray]]:
    """A news source as {"train", "valid"}: a stratified 15% validation part, seed 0."""
    texts, y = load_labelled(news_dir(data_dir) / f"{source}.csv", "sentiment")
    keep, held = stratified_split(y, NEWS_VALID_FRAC, NEWS_SPLIT_SEED)
    return {
        "train": ([texts[i] for i in keep], y[keep]),
        "valid": ([texts[i] for i in held], y[held]),
    }


def report_sets(data_dir: str | Path) -> dict[str, tuple[str, list[str], np.ndarray]]:
    """The report-only sets, never trained on: name -> (task, texts, label indices)."""
    data_dir = Path(data_dir)
    sets = {
        f"twitter_{task}_valid": (task, *load_labelled(data_dir / f"{task}_valid.csv", task))
        for task in TASKS
    }
    for source in NEWS_SOURCES:
        sets[f"{source}_valid"] = ("sentiment", *news_split(data_dir, source)["valid"])
    return sets


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over classes seen in truth or predictions (as sklearn does)."""
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, bins: int = 15
) -> float:
    """ECE of the top label: |accuracy - confidence| over equal-width confidence bins,
    weighted by each bin's share of the rows (Guo et al., 2017).

    >>> round(expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])), 3)
    0.35
    """
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of 0 joins the first.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            total += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def features_for(
    csv_path: str | Path,
    encoder: SentenceEncoder,
    *,
    texts: Sequence[str] | None = None,
    limit: int | None = None,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
) -> np.ndarray:
    """Encoder features for a CSV's rows, from the on-disk cache when it has them.

    The key covers everything that changes the features: file content, model,
    pooling, truncation. A partial read (`limit`) uses a full cache but never
    writes one. `cache_dir=None` disables caching, as does any encoder but the packaged one.
    """
    csv_path = Path(csv_path)
    if encoder.model_id != MODEL_ID:  # only the packaged weights are known never to change
        cache_dir = None
    if texts is None:
        texts, _ = load_csv(csv_path)
    texts = texts[:limit] if limit is not None else texts
    cache_file = None
    if cache_dir is not None:
        key = f"{_sha256(csv_path)}-{encoder.model_id}-{encoder.pooling}-{encoder.max_tokens}"
        cache_file = Path(cache_dir) / f"{key}.npy"
        if cache_file.exists():
            cached = np.load(cache_file)
            if len(cached) >= len(texts):
                log.info("features for %s from cache %s", csv_path.name, cache_file)
                return cached[: len(texts)]
    log.info("encoding %d texts from %s", len(texts), csv_path.name)
    feats = encoder.encode(texts).numpy()
    if cache_file is not None and limit is None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, feats)
            os.replace(tmp, cache_file)
        except OSError as exc:
            log.warning("could not cache features in %s: %s", cache_file.parent, exc)
    return feats


def _fit_head(
    heads: ClassifierHeads,
    task: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    class_weights: bool,
    generator: torch.Generator,
) -> None:
    """AdamW with a one-cycle schedule; a fixed epoch count, since valid is for reporting only."""
    head = heads.heads[task]
    head.set_standardisation(x)
    weight = None
    if class_weights:  # sqrt inverse frequency: measured, it trades accuracy for minority recall
        counts = torch.bincount(y, minlength=len(LABELS[task])).clamp(min=1).float()
        weight = (counts.sum() / (len(counts) * counts)).sqrt()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = (len(y) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()


def scores(probabilities: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """n, accuracy, macro-F1 and ECE (15 bins) of probabilities against label indices."""
    pred = probabilities.argmax(-1)
    return {
        "n": len(y),
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": macro_f1(y, pred),
        "ece": expected_calibration_error(probabilities, y),
    }


def _scores(heads: ClassifierHeads, task: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return scores(heads.predict(torch.from_numpy(x))[task].numpy(), y)


def train_heads(
    data_dir: str | Path,
    out_path: str | Path,
    *,
    seed: int = 0,
    epochs: int = 20,
    encoder: SentenceEncoder | None = None,
    hidden: int = 256,
    dropout: float = 0.2,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 128,
    class_weights: bool = False,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Fit both heads on `{task}_train.csv`, score on `{task}_valid.csv`, save to `out_path`.

    Deterministic for a given seed and features; the global RNG is left as found.
    Returns the figures, which are also stored in the file's metadata.
    """
    data_dir = Path(data_dir)
    encoder = encoder or SentenceEncoder()
    figures: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = ClassifierHeads(
            encoder.dim,
            hidden=hidden,
            dropout=dropout,
            pooling=encoder.pooling,
            model_id=encoder.model_id,
            max_tokens=encoder.max_tokens,
        )
        generator = torch.Generator().manual_seed(seed)
        for task in TASKS:
            split: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name in ("train", "valid"):
                path = data_dir / f"{task}_{name}.csv"
                texts, names = load_csv(path, task)
                split[name] = (
                    features_for(path, encoder, texts=texts, cache_dir=cache_dir),
                    label_ids(task, names),
                )
            x, y = split["train"]
            log.info("training %s head on %d rows", task, len(y))
            _fit_head(
                heads,
                task,
                torch.from_numpy(x),
                torch.from_numpy(y),
                epochs=epochs,
                lr=lr,
                weight_decay=weight_decay,
                batch_size=batch_size,
                class_weights=class_weights,
                generator=generator,
            )
            figures[task] = {
                name: _scores(heads, task, *split[name]) for name in ("train", "valid")
            }
    figures["training"] = {
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "class_weights": class_weights,
    }
    heads.figures = figures
    heads.save(out_path)
    return figures


def evaluate(
    task: str,
    csv_path: str | Path,
    heads_path: str | Path | None = None,
    encoder: SentenceEncoder | None = None,
    limit: int | None = None,
    *,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and calibration error (ECE, 15 bins, top label) of saved heads
    on a labelled CSV (its first `limit` rows if given)."""
    heads, encoder = _heads_and_encoder(heads_path, encoder)
    texts, names = load_csv(csv_path, task)
    feats = features_for(csv_path, encoder, texts=texts, limit=limit, cache_dir=cache_dir)
    y = label_ids(task, names[: len(feats)])
    return {"task": task, **_scores(heads, task, feats, y)}


def _heads_and_encoder(
    heads_path: str | Path | None, encoder: SentenceEncoder | None
) -> tuple[ClassifierHeads, SentenceEncoder]:
    """Saved heads and the encoder that feeds them (rebuilt from the file if not given)."""
    heads = ClassifierHeads.load(heads_path)
    if encoder is None:
        encoder = SentenceEncoder(
            pooling=heads.pooling, max_tokens=heads.max_tokens, deltas=heads.encoder_deltas
        )
    elif (encoder.pooling, encoder.dim) != (heads.pooling, heads.dim):
        raise ValueError(
            f"encoder pools {encoder.pooling!r} to dim {encoder.dim}; "
            f"heads want {heads.pooling!r} and dim {heads.dim}"
        )
    return heads, encoder


def evaluate_all(
    data_dir: str | Path,
    heads_path: str | Path | None = None,
    encoder: SentenceEncoder | None = None,
    *,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Accuracy, macro-F1 and ECE on every report set (`report_sets`): the twitter
    valid files and each news source's validation split."""
    heads, encoder = _heads_and_encoder(heads_path, encoder)
    figures: dict[str, dict[str, Any]] = {}
    for name, (task, texts, y) in report_sets(data_dir).items():
        figures[name] = {"task": task, **_scores(heads, task, encoder.encode(texts).numpy(), y)}
        if progress is not None:
            progress(name, figures[name])
    return figures

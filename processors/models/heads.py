"""Small classifier heads on top of the encoder's pooled features, and their files.

Both tasks read the same feature row, so one encoder pass serves topic and
sentiment. Each head standardises its input with statistics from its own training
set, then runs a one-hidden-layer MLP (measured better than a linear head by
4-6 accuracy points on both tasks), and divides its logits by a temperature fitted
on data held apart from training, so its probabilities are calibrated. A file also
records how the features were made, so inference can rebuild the exact encoder.

Two formats: `finsentry-heads/1`, heads for the packaged encoder as it is (or for a
fine-tuned encoder directory), and `finsentry-adapted/1`, the default model: heads
plus deltas of the encoder's top layers (int8 with a scale per row, or fp16), which
`SentenceEncoder` adds into the packaged weights at load (so inference costs what the
base model costs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from processors.envelope.labels import LABELS
from processors.models.encoder import DEFAULT_POOLING, MODEL_ID

FORMAT = "finsentry-heads/1"
ADAPTED_FORMAT = "finsentry-adapted/1"
DEFAULT_HEADS_PATH = Path(__file__).resolve().parent / "weights" / "default_model.safetensors"
DELTA = "delta."  # tensors of an adapted file: encoder parameter deltas ...
HEADS = "heads."  # ... and the heads' state
# A fine-tuned encoder directory keeps the heads trained with it under this name.
FINETUNED_HEADS = "heads.safetensors"
MIN_SCALE = 1e-4  # a feature spread this narrow in training is taken as constant


def heads_path_for(encoder_dir: str | Path | None) -> Path:
    """The heads trained with an encoder: beside a fine-tuned one, else the committed ones."""
    return Path(encoder_dir) / FINETUNED_HEADS if encoder_dir else DEFAULT_HEADS_PATH


class TaskHead(torch.nn.Module):
    """Standardise, then dropout -> Linear -> GELU -> dropout -> Linear (or linear if hidden=0)."""

    def __init__(self, dim: int, n_labels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        layers: list[torch.nn.Module] = [torch.nn.Dropout(dropout)]
        if hidden:
            layers += [
                torch.nn.Linear(dim, hidden),
                torch.nn.GELU(),
                torch.nn.Dropout(dropout),
                torch.nn.Linear(hidden, n_labels),
            ]
        else:
            layers.append(torch.nn.Linear(dim, n_labels))
        self.net = torch.nn.Sequential(*layers)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Fix the input shift/scale from training features, so training is well conditioned.

        A few MiniLM dimensions are constant: dividing by their zero spread would turn
        any later change in them (fine-tuning, int8, fp16) into a huge input, so they
        keep unit scale.
        """
        std = features.std(0)
        self.shift.copy_(features.mean(0))
        self.scale.copy_(torch.where(std > MIN_SCALE, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.shift) / self.scale)


class ClassifierHeads(torch.nn.Module):
    """One head per task in `LABELS`; output columns follow `LABELS[task]` order."""

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        dropout: float = 0.2,
        pooling: str = DEFAULT_POOLING,
        model_id: str = MODEL_ID,
        max_tokens: int = 128,
        tasks: tuple[str, ...] = ("topic", "sentiment"),
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.pooling = pooling
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.labels: dict[str, tuple[str, ...]] = {t: LABELS[t] for t in tasks}
        self.heads = torch.nn.ModuleDict(
            {t: TaskHead(dim, len(labels), hidden, dropout) for t, labels in self.labels.items()}
        )
        self.temperatures: dict[str, float] = dict.fromkeys(self.labels, 1.0)
        # Of an adapted file: what to add to the packaged encoder's parameters, by name.
        self.encoder_deltas: dict[str, torch.Tensor] = {}
        self.base_sha256 = ""  # the packaged weights the deltas were trained on
        self.figures: dict[str, Any] = {}

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task (training uses these; callers want `predict`)."""
        return {task: head(features) for task, head in self.heads.items()}

    def predict(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Probabilities per task, [n, len(LABELS[task])], rows summing to 1."""
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have dim {features.shape[-1]}, heads expect {self.dim}")
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            out = {
                t: (logits / self.temperatures[t]).softmax(-1)
                for t, logits in self(features.float()).items()
            }
        self.train(was_training)
        return out

    def metadata(self) -> dict[str, str]:
        """Everything needed to rebuild these heads and the encoder that feeds them."""
        return {
            "format": FORMAT,
            "model_id": self.model_id,
            "pooling": self.pooling,
            "max_tokens": str(self.max_tokens),
            "dim": str(self.dim),
            "architecture": json.dumps(
                {
                    "standardise": True,
                    "hidden": self.hidden,
                    "activation": "gelu",
                    "dropout": self.dropout,
                }
            ),
            "labels": json.dumps(self.labels),
            "temperatures": json.dumps(self.temperatures),
            "figures": json.dumps(self.figures),
        }

    def save(self, path: str | Path) -> None:
        """Write weights and metadata as one safetensors file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata=self.metadata())

    @classmethod
    def load(cls, path: str | Path | None = None) -> ClassifierHeads:
        """Rebuild heads from a heads or adapted file (the committed default if no path)."""
        path = Path(path) if path is not None else DEFAULT_HEADS_PATH
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        if meta.get("format") not in (FORMAT, ADAPTED_FORMAT):
            raise ValueError(
                f"{path} is not a finsentry heads file (format {meta.get('format')!r})"
            )
        labels = {t: tuple(v) for t, v in json.loads(meta["labels"]).items()}
        for task, names in labels.items():
            if names != LABELS[task]:
                raise ValueError(f"{path}: {task} labels {names} differ from LABELS[{task!r}]")
        adapted = meta["format"] == ADAPTED_FORMAT
        arch = json.loads(meta["heads" if adapted else "architecture"])
        heads = cls(
            int(arch["dim"]) if adapted else int(meta["dim"]),
            hidden=int(arch["hidden"]),
            dropout=float(arch["dropout"]),
            pooling=meta["pooling"],
            model_id=meta.get("base_model_id", meta.get("model_id", MODEL_ID)),
            max_tokens=int(meta["max_tokens"]),
            tasks=tuple(labels),
        )
        if adapted:
            state = {k[len(HEADS) :]: v.float() for k, v in tensors.items() if k.startswith(HEADS)}
            heads.encoder_deltas = {
                k[len(DELTA) :]: v for k, v in tensors.items() if k.startswith(DELTA)
            }
            heads.base_sha256 = meta.get("base_sha256", "")
        else:
            state = tensors
        heads.load_state_dict(state, strict=True)
        heads.temperatures = {
            t: float(v) for t, v in json.loads(meta.get("temperatures", "{}")).items()
        } or heads.temperatures
        heads.figures = json.loads(meta.get("figures", "{}"))
        heads.eval()
        return heads

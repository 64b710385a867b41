"""The default model's encoder on ONNX Runtime, weights in int8: the fast CPU path.

An export (`finsentry export-onnx`, made offline by `processors.training.export`) is a
directory with `encoder.onnx`, the tokenizer and a manifest. Pooling stays in torch on
the returned token states, exactly as for the torch encoder. Quantisation costs some
accuracy, so an int8 export is only served once its accuracy gate, kept in the manifest,
has measured it within `GATE_POINTS` of fp32 on both validation sets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from processors.envelope.labels import LABELS
from processors.models.batching import MicroBatchRunner
from processors.models.encoder import DEFAULT_POOLING, MODEL_ID, parse_pooling, pool
from processors.models.heads import DEFAULT_HEADS_PATH

FORMAT = "finsentry-onnx/1"
MANIFEST = "manifest.json"
GATE_POINTS = 1.0  # int8 may lose at most this many accuracy points on either task
DEFAULT_ONNX_ROOT = Path.home() / ".cache" / "finsentry" / "onnx"


def default_onnx_dir(encoder_dir: str | Path | None = None) -> Path:
    """Beside a fine-tuned encoder; for the default model, in the user's cache, under the
    digest of its weights file (its deltas change the encoder: an old export is not it)."""
    if encoder_dir:
        return Path(encoder_dir) / "onnx"
    digest = hashlib.sha256(DEFAULT_HEADS_PATH.read_bytes()).hexdigest()[:12]
    return DEFAULT_ONNX_ROOT / f"{MODEL_ID}-{digest}"


def read_manifest(onnx_dir: str | Path) -> dict[str, Any]:
    """The export's description, refusing a directory that holds no complete export."""
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX export in {onnx_dir}: run `finsentry export-onnx`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a finsentry ONNX export ({manifest.get('format')!r})")
    return manifest


class OnnxEncoder:
    """`SentenceEncoder`'s interface on an ONNX Runtime CPU session.

    Micro-batching and padding are the torch encoder's (`MicroBatchRunner`), and so is
    the pooling, so features differ only by what the weights' precision changes.
    """

    def __init__(
        self,
        onnx_dir: str | Path,
        max_tokens: int = 128,
        batch_size: int = 256,
        *,
        pooling: str = DEFAULT_POOLING,
        num_threads: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> None:
        import onnxruntime as ort

        onnx_dir = Path(onnx_dir)
        self.manifest = read_manifest(onnx_dir)
        self.model_id = f"{self.manifest['model_id']}+onnx-{self.manifest['weights']}"
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.pooling = pooling
        self._parts = parse_pooling(pooling)
        self.dim = int(self.manifest["hidden_size"]) * len(self._parts)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(
            str(onnx_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self.session.get_inputs()]
        tokenizer = AutoTokenizer.from_pretrained(onnx_dir, local_files_only=True)
        self.runner = MicroBatchRunner(
            tokenizer,
            self._features,
            self.dim,
            torch.device("cpu"),
            max_tokens=max_tokens,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=batch_size,
        )

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled float32 features [n, dim] on CPU, rows in the order given."""
        return self.runner.run(texts)

    def _features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: inputs[name].numpy() for name in self._inputs}
        (hidden,) = self.session.run(None, feed)
        return pool(torch.from_numpy(hidden), inputs["attention_mask"], self._parts)


def check_gate(onnx_dir: str | Path) -> None:
    """Refuse an int8 export that has not been measured within `GATE_POINTS` of fp32."""
    manifest = read_manifest(onnx_dir)
    if manifest["weights"] != "int8":
        return
    gate = manifest.get("gate")
    if gate is None:
        raise ValueError(
            f"the int8 export in {onnx_dir} has no accuracy check yet: run "
            "`finsentry export-onnx` with the training data at hand, or use backend torch"
        )
    if not gate["passed"]:
        lost = ", ".join(
            f"{t} {gate[t]['torch']['accuracy']:.3f} -> {gate[t]['onnx']['accuracy']:.3f}"
            for t in LABELS
        )
        raise ValueError(
            f"the int8 export in {onnx_dir} loses more than {GATE_POINTS:g} accuracy point "
            f"on valid ({lost}): the onnx backend is not offered for this model; use "
            "inference.backend: torch, or export with --no-quantize"
        )


def load_onnx_encoder(
    onnx_dir: str | Path | None, encoder_dir: str | Path | None = None, **options: Any
) -> OnnxEncoder:
    """The gated ONNX encoder for `encoder_dir`; a missing export stops the job at start."""
    onnx_dir = Path(onnx_dir) if onnx_dir else default_onnx_dir(encoder_dir)
    if not (onnx_dir / MANIFEST).is_file():
        make = "finsentry export-onnx" + (f" --encoder {encoder_dir}" if encoder_dir else "")
        raise FileNotFoundError(
            f"inference.backend is onnx but {onnx_dir} holds no ONNX export: "
            f"make one with `{make}` (it also runs the int8 accuracy check), "
            "or use inference.backend: torch"
        )
    check_gate(onnx_dir)
    return OnnxEncoder(onnx_dir, **options)

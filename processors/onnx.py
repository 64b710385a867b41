"""The default model's encoder on ONNX Runtime, weights in int8: the fast CPU path.

`export_onnx` traces the MiniLM encoder (the packaged one or a fine-tuned directory)
to ONNX with dynamic batch and sequence axes, then quantises its weights to int8, one
scale per output channel, with `quantize_dynamic` (activations are quantised on the
fly, so no calibration data). Pooling stays in torch on the returned token states,
exactly as for the torch encoder. Quantisation costs some accuracy, so an int8 export
is only served once `accuracy_gate` has measured it within `GATE_POINTS` of fp32 on
both validation sets; the result is kept in the export's manifest.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from processors.batching import MicroBatchRunner
from processors.encoder import (
    DEFAULT_POOLING,
    MODEL_ID,
    SentenceEncoder,
    default_model_dir,
    parse_pooling,
    pool,
)
from processors.heads import ClassifierHeads, heads_path_for
from processors.training import TASKS, evaluate

FORMAT = "finsentry-onnx/1"
MANIFEST = "manifest.json"
GATE_POINTS = 1.0  # int8 may lose at most this many accuracy points on either task
DEFAULT_ONNX_ROOT = Path.home() / ".cache" / "finsentry" / "onnx"
OPSET = 17


def default_onnx_dir(encoder_dir: str | Path | None = None) -> Path:
    """Beside a fine-tuned encoder; for the packaged one, in the user's cache."""
    return Path(encoder_dir) / "onnx" if encoder_dir else DEFAULT_ONNX_ROOT / MODEL_ID


class _TokenStates(torch.nn.Module):
    """The traced function: token ids and mask in, last hidden states out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(
    out_dir: str | Path, encoder_dir: str | Path | None = None, *, quantize: bool = True
) -> dict[str, Any]:
    """Write `encoder.onnx` (int8 weights unless `quantize=False`), tokenizer, manifest.

    Uses the TorchScript exporter, which needs no dependency beyond `onnx`, on eager
    attention (plain matmuls and softmax). The manifest is written last, so a
    directory with one holds a complete export.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    source = Path(encoder_dir) if encoder_dir else default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation="eager")
    example = tokenizer(["a short text", "a somewhat longer example text"], padding=True)
    args = tuple(torch.tensor(example[k]) for k in ("input_ids", "attention_mask"))
    fp32 = out_dir / "encoder.fp32.onnx"
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            _TokenStates(model.eval()),
            args,
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=OPSET,
            dynamo=False,
        )
    final = out_dir / "encoder.onnx"
    if quantize:
        # Per-channel scales: per-tensor ones flipped one label in ten on valid rows.
        quantize_dynamic(fp32, final, per_channel=True, weight_type=QuantType.QInt8)
        fp32.unlink()
    else:
        fp32.replace(final)
    tokenizer.save_pretrained(out_dir)
    manifest = {
        "format": FORMAT,
        "source": str(encoder_dir) if encoder_dir else MODEL_ID,
        "model_id": source.name if encoder_dir else MODEL_ID,
        "hidden_size": int(model.config.hidden_size),
        "weights": "int8" if quantize else "float32",
        "bytes": final.stat().st_size,
        "export_seconds": round(time.monotonic() - started, 1),
    }
    _write_manifest(out_dir, manifest)
    return manifest


def read_manifest(onnx_dir: str | Path) -> dict[str, Any]:
    """The export's description, refusing a directory that holds no complete export."""
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX export in {onnx_dir}: run `finsentry export-onnx`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a finsentry ONNX export ({manifest.get('format')!r})")
    return manifest


def _write_manifest(onnx_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = onnx_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(onnx_dir / MANIFEST)


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


def accuracy_gate(
    onnx_dir: str | Path,
    data_dir: str | Path,
    *,
    encoder_dir: str | Path | None = None,
    limit: int | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Valid-set accuracy of the export against the torch encoder, recorded in the manifest.

    Both use the heads trained with the encoder and their truncation; the export
    passes when neither task loses more than `GATE_POINTS` accuracy points.
    """
    onnx_dir, data_dir = Path(onnx_dir), Path(data_dir)
    heads_path = heads_path_for(encoder_dir)
    heads = ClassifierHeads.load(heads_path)
    encoders = {
        "torch": SentenceEncoder(
            encoder_dir, "cpu", heads.max_tokens, pooling=heads.pooling, num_threads=num_threads
        ),
        "onnx": OnnxEncoder(
            onnx_dir, heads.max_tokens, pooling=heads.pooling, num_threads=num_threads
        ),
    }
    gate: dict[str, Any] = {"heads": str(heads_path), "limit": limit}
    for task in TASKS:
        csv_path = data_dir / f"{task}_valid.csv"
        gate[task] = {
            name: {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in evaluate(task, csv_path, heads_path, encoder, limit).items()
                if k != "task"
            }
            for name, encoder in encoders.items()
        }
    gate["passed"] = all(
        gate[t]["onnx"]["accuracy"] >= gate[t]["torch"]["accuracy"] - GATE_POINTS / 100
        for t in TASKS
    )
    manifest = read_manifest(onnx_dir)
    manifest["gate"] = gate
    _write_manifest(onnx_dir, manifest)
    return gate


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
            for t in TASKS
        )
        raise ValueError(
            f"the int8 export in {onnx_dir} loses more than {GATE_POINTS:g} accuracy point "
            f"on valid ({lost}): the onnx backend is not offered for this model; use "
            "inference.backend: torch, or export with --no-quantize"
        )


def load_onnx_encoder(
    onnx_dir: str | Path | None,
    encoder_dir: str | Path | None = None,
    **options: Any,
) -> OnnxEncoder:
    """The gated ONNX encoder for `encoder_dir`, exported and checked first if missing."""
    from processors.training import find_data_dir

    onnx_dir = Path(onnx_dir) if onnx_dir else default_onnx_dir(encoder_dir)
    if not (onnx_dir / MANIFEST).is_file():
        print(
            f"finsentry: no ONNX export in {onnx_dir}; exporting the encoder and checking "
            "its int8 accuracy on the validation sets (a minute or two)",
            file=sys.stderr,
            flush=True,
        )
        export_onnx(onnx_dir, encoder_dir)
        gate = accuracy_gate(
            onnx_dir,
            find_data_dir(),
            encoder_dir=encoder_dir,
            num_threads=options.get("num_threads"),
        )
        print(f"finsentry: ONNX export done; accuracy check: {json.dumps(gate)}", file=sys.stderr)
    check_gate(onnx_dir)
    return OnnxEncoder(onnx_dir, **options)

"""Export the default model's encoder to ONNX with int8 weights, and gate its accuracy.

`export_onnx` traces the MiniLM encoder (the packaged one or a fine-tuned directory)
to ONNX with dynamic batch and sequence axes, then quantises its weights to int8, one
scale per output channel, with `quantize_dynamic` (activations are quantised on the
fly, so no calibration data). `accuracy_gate` measures the export against fp32 on both
validation sets and records the result in the manifest, which the serving path checks.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from processors.models.encoder import MODEL_ID, SentenceEncoder, default_model_dir, load_encoder
from processors.models.heads import ClassifierHeads, heads_path_for
from processors.models.onnx import (
    FORMAT,
    GATE_POINTS,
    MANIFEST,
    OnnxEncoder,
    read_manifest,
)
from processors.training.train import TASKS, evaluate

OPSET = 17


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
    # The default model's encoder is the packaged one with its trained deltas merged in.
    deltas = ClassifierHeads.load(heads_path_for(encoder_dir)).encoder_deltas
    model = load_encoder(source, deltas, attn_implementation="eager")
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


def _write_manifest(onnx_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = onnx_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(onnx_dir / MANIFEST)


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
            encoder_dir,
            "cpu",
            heads.max_tokens,
            pooling=heads.pooling,
            num_threads=num_threads,
            deltas=heads.encoder_deltas,
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

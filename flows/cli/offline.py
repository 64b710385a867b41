"""The offline commands: train, eval, export-onnx. The CLI's one door to
`processors.training`, which nothing on the serving path imports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the offline subcommands to the `finsentry` parser."""
    train = sub.add_parser("train", help="train the default model's topic and sentiment heads")
    train.add_argument("--data", type=Path, default=None, help="folder with *_train.csv")
    train.add_argument(
        "--out", type=Path, default=None, help="heads file, or the directory for --fine-tune"
    )
    train.add_argument("--seed", type=int, default=0)
    tune = train.add_argument_group("fine-tuning the encoder too")
    tune.add_argument("--fine-tune", action="store_true", help="train encoder and heads together")
    tune.add_argument("--epochs", type=float, default=2.0, help="passes over the larger set")
    tune.add_argument("--max-minutes", type=float, default=20.0, help="wall-clock budget")
    tune.add_argument(
        "--balance",
        type=float,
        default=0.5,
        help="class weights: frequency ** -BALANCE (0: none, 1: balanced; default 0.5)",
    )
    train.set_defaults(command=_train)

    export = sub.add_parser("export-onnx", help="the default encoder as int8 ONNX for CPUs")
    export.add_argument("--out", type=Path, default=None, help="directory (default: cache)")
    export.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder dir")
    export.add_argument("--no-quantize", action="store_true", help="keep float32 weights")
    export.add_argument("--data", type=Path, default=None, help="folder with *_valid.csv")
    export.set_defaults(command=_export_onnx)

    ev = sub.add_parser("eval", help="accuracy and macro-F1 of the default model on a CSV")
    ev.add_argument("--task", choices=("topic", "sentiment"), required=True)
    ev.add_argument("--data", type=Path, required=True, help="CSV with columns text,label")
    ev.add_argument("--heads", type=Path, default=None, help="head weights (default: committed)")
    ev.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder directory")
    ev.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    ev.add_argument("--onnx-path", type=Path, default=None, help="ONNX export (default: cache)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N rows")
    ev.set_defaults(command=_eval)


def _train(args: argparse.Namespace) -> int:
    from processors.models.heads import DEFAULT_HEADS_PATH
    from processors.training.train import find_data_dir, train_heads

    data = args.data or find_data_dir()
    if args.fine_tune:
        from processors.training.finetune import DEFAULT_FINETUNED_DIR, fine_tune

        figures = fine_tune(
            data,
            args.out or DEFAULT_FINETUNED_DIR,
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            balance=args.balance,
            seed=args.seed,
            progress=lambda line: print(f"fine-tune: {line}", file=sys.stderr, flush=True),
        )
    else:
        figures = train_heads(data, args.out or DEFAULT_HEADS_PATH, seed=args.seed)
    print(json.dumps(figures, indent=2))
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from processors.models.onnx import check_gate, default_onnx_dir
    from processors.training.export import accuracy_gate, export_onnx
    from processors.training.train import find_data_dir

    out = args.out or default_onnx_dir(args.encoder)
    manifest = export_onnx(out, args.encoder, quantize=not args.no_quantize)
    print(f"exported to {out}: {json.dumps(manifest)}", file=sys.stderr, flush=True)
    if not args.no_quantize:
        gate = accuracy_gate(out, args.data or find_data_dir(), encoder_dir=args.encoder)
        print(json.dumps(gate))
        check_gate(out)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from flows.config import InferenceConfig, ModelConfig
    from flows.models import build_default_model
    from processors.models.heads import ClassifierHeads, heads_path_for
    from processors.training.train import evaluate

    if not args.data.is_file():
        raise FileNotFoundError(f"data file not found: {args.data}")
    heads = args.heads or heads_path_for(args.encoder)
    model = build_default_model(
        ModelConfig(heads=heads, encoder=args.encoder),
        InferenceConfig(
            max_tokens=ClassifierHeads.load(heads).max_tokens,  # truncate as in training
            backend=args.backend,
            onnx_path=args.onnx_path,
        ),
    )
    print(json.dumps(evaluate(args.task, args.data, heads, model.encoder, args.limit)))
    return 0

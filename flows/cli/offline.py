"""The offline commands: train, eval, export-onnx. The CLI's one door to
`processors.training`, which nothing on the serving path imports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the offline subcommands to the `finsentry` parser."""
    train = sub.add_parser(
        "train",
        help="train the default model: top encoder layers (int8 deltas) and both heads",
    )
    train.add_argument("--data", type=Path, default=None, help="folder with *_train.csv")
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="weights file (default: the committed default model), or the directory for "
        "--fine-tune; required with --heads-only",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--epochs", type=float, default=None, help="passes (default 3; --fine-tune: 2)"
    )
    train.add_argument(
        "--max-minutes", type=float, default=None, help="wall-clock budget (default 120; 20)"
    )
    train.add_argument(
        "--balance",
        type=float,
        default=0.5,
        help="class weights: frequency ** -BALANCE (0: none, 1: balanced; default 0.5)",
    )
    adapt = train.add_argument_group("the default recipe: top-k layers fine-tune")
    adapt.add_argument("--layers", type=int, default=3, help="top encoder layers trained")
    adapt.add_argument("--lr", type=float, default=1e-4, help="the layers' learning rate")
    adapt.add_argument("--warmup", type=float, default=0.06, help="share of training")
    adapt.add_argument(
        "--init-from", type=Path, default=None, help="continue from an earlier weights file"
    )
    adapt.add_argument("--limit", type=int, default=None, help="only the first N rows a file")
    other = train.add_argument_group("other recipes").add_mutually_exclusive_group()
    other.add_argument(
        "--fine-tune", action="store_true", help="fine-tune the whole encoder (a directory)"
    )
    other.add_argument(
        "--heads-only", action="store_true", help="heads on the frozen encoder (needs --out)"
    )
    train.set_defaults(command=_train)

    export = sub.add_parser("export-onnx", help="the default encoder as int8 ONNX for CPUs")
    export.add_argument("--out", type=Path, default=None, help="directory (default: cache)")
    export.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder dir")
    export.add_argument("--no-quantize", action="store_true", help="keep float32 weights")
    export.add_argument("--data", type=Path, default=None, help="folder with *_valid.csv")
    export.set_defaults(command=_export_onnx)

    ev = sub.add_parser("eval", help="accuracy, macro-F1 and ECE of the default model")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=("topic", "sentiment"), help="with --data: one CSV")
    which.add_argument(
        "--all",
        action="store_true",
        help="every report set: twitter topic/sentiment valid, each news validation split",
    )
    ev.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CSV with columns text,label (--task); folder with *_valid.csv (--all)",
    )
    ev.add_argument("--heads", type=Path, default=None, help="weights (default: committed)")
    ev.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder directory")
    ev.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    ev.add_argument("--onnx-path", type=Path, default=None, help="ONNX export (default: cache)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N rows (--task)")
    ev.set_defaults(command=_eval)


def _say(line: str) -> None:
    print(f"train: {line}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    from processors.training.train import find_data_dir

    data = args.data or find_data_dir()
    if args.fine_tune:
        from processors.training.finetune import DEFAULT_FINETUNED_DIR, fine_tune

        figures = fine_tune(
            data,
            args.out or DEFAULT_FINETUNED_DIR,
            epochs=2.0 if args.epochs is None else args.epochs,
            max_minutes=20.0 if args.max_minutes is None else args.max_minutes,
            balance=args.balance,
            seed=args.seed,
            progress=_say,
        )
    elif args.heads_only:
        from processors.training.train import train_heads

        if args.out is None:  # the committed default is an adapted file, not heads
            raise SystemExit("train --heads-only: --out is required")
        figures = train_heads(data, args.out, seed=args.seed)
    else:
        from processors.models.heads import DEFAULT_HEADS_PATH
        from processors.training.adapt import train_adapted

        figures = train_adapted(
            data,
            args.out or DEFAULT_HEADS_PATH,
            args.seed,
            trained_layers=args.layers,
            epochs=3.0 if args.epochs is None else args.epochs,
            lr=args.lr,
            warmup=args.warmup,
            balance=args.balance,
            max_minutes=120.0 if args.max_minutes is None else args.max_minutes,
            limit=args.limit,
            init_from=args.init_from,
            progress=_say,
        )
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
    from processors.training.train import evaluate, evaluate_all, find_data_dir

    if args.all:
        data = args.data or find_data_dir()
        if not data.is_dir():
            raise FileNotFoundError(f"data folder not found: {data}")
    elif args.data is None or not args.data.is_file():
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
    if args.all:
        for name, figures in evaluate_all(data, heads, model.encoder).items():
            print(json.dumps({"set": name, **figures}))
    else:
        print(json.dumps(evaluate(args.task, args.data, heads, model.encoder, args.limit)))
    return 0

"""`finsentry bench`: throughput of the naive baseline, the processors and the flow.

All run in one process, so their ratios are meaningful even on a noisy, shared
machine:

- naive: one Hugging Face `pipeline` call per message per task, as the usual examples do;
- processors: finsentry's chain on batches (one encoder pass serves both heads), on the
  same generated headlines as the naive baseline; optionally on the int8 ONNX backend;
- flow: the whole Bytewax dataflow from a file, with the configured chain and with a
  no-op processor (the pipeline's own cost: parsing, de-duplication, windows, metrics),
  on headlines made distinct (1% repeats, as in a real feed) so that nearly all of
  them go through every step.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flows.config import Config
from flows.sources.demo import MarketDay, generate
from processors.envelope.message import Message
from processors.envelope.parse import Parser

BENCH_DAY = date(2024, 3, 14)
WARM_UP_SEED = 97


@dataclass(frozen=True)
class Measure:
    name: str
    messages: int
    seconds: float
    batch_seconds: tuple[float, ...] = ()
    batch_size: int | None = None
    gpu_busy: float | None = None
    cpu_seconds: float | None = None  # all of the process's threads
    scored: int | None = None  # of the flow's items: those not rejected or repeats
    runs_seconds: tuple[float, ...] = ()  # every repeat, when the measure is a median

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.messages / self.seconds, 1) if self.seconds else None,
        }
        if self.scored is not None:
            out["scored"] = self.scored
        if self.cpu_seconds:
            out["msgs_per_cpu_s"] = round(self.messages / self.cpu_seconds, 1)
        if len(self.runs_seconds) > 1:
            out["runs_msgs_per_s"] = [round(self.messages / s, 1) for s in self.runs_seconds]
        if self.batch_seconds:
            ordered = sorted(self.batch_seconds)
            out["batch_size"] = self.batch_size
            out["batch_p50_s"] = round(statistics.median(ordered), 4)
            out["batch_p99_s"] = round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4)
        if self.gpu_busy is not None:
            out["gpu_busy"] = round(self.gpu_busy, 3)
        return out


def headlines(n: int, seed: int = 3, distinct: bool = False) -> list[bytes]:
    """`n` realistic JSON-lines items (a generated market day, as long as needed).

    `distinct` makes every text unique but for 1% syndicated copies, as in a real feed,
    so that de-duplication passes nearly all of them on to the windows.
    """
    minutes = 390
    rate = max(24.0, n / minutes * 1.05)
    day = MarketDay(
        BENCH_DAY,
        minutes=minutes,
        rate=rate,
        seed=seed,
        malformed_share=0.0,
        distinct_texts=distinct,
    )
    return list(generate(day))[:n]


def messages_from(lines: Sequence[bytes]) -> list[Message]:
    parser = Parser()
    now = datetime.now(UTC)
    return [
        m
        for m in (parser.parse(line, "bench", None, now) for line in lines)
        if isinstance(m, Message)
    ]


class GpuSampler:
    """Samples `torch.cuda.utilization()` while running; None on machines without CUDA."""

    def __init__(self, every: float = 0.05) -> None:
        import torch

        self.enabled = torch.cuda.is_available()
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.every):
            try:
                self.samples.append(torch.cuda.utilization() / 100.0)
            except Exception:
                self.enabled = False
                return

    @property
    def busy(self) -> float | None:
        return float(np.mean(self.samples)) if self.enabled and self.samples else None


def bench_processors(config: Config, messages: list[Message], batch_size: int) -> Measure:
    from flows.models import build_chain

    chain = build_chain(config)
    # Warm-up (first calls allocate and compile) on other texts: the default model keeps
    # its latest pass for the next task, so a batch seen in the warm-up would come free.
    chain.process(messages_from(headlines(batch_size, seed=WARM_UP_SEED)))
    batch_seconds = []
    with GpuSampler() as gpu:
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(messages), batch_size):
            t = time.perf_counter()
            chain.process(messages[i : i + batch_size])
            batch_seconds.append(time.perf_counter() - t)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Measure(
        "processors", len(messages), total, tuple(batch_seconds), batch_size, gpu.busy, cpu
    )


def bench_naive(config: Config, messages: list[Message]) -> Measure:
    """The examples' way: a feature-extraction pipeline call per message, per task."""
    import torch
    from transformers import AutoTokenizer, pipeline

    from processors.models.encoder import (
        default_model_dir,
        load_encoder,
        parse_pooling,
        pick_device,
        pool,
    )
    from processors.models.heads import ClassifierHeads

    heads = ClassifierHeads.load(config.processors[0].models[0].heads)
    device = pick_device(config.inference.device)
    # The same model as the processors': the packaged encoder with the heads' deltas.
    extract = pipeline(
        "feature-extraction",
        model=load_encoder(default_model_dir(), heads.encoder_deltas),
        tokenizer=AutoTokenizer.from_pretrained(default_model_dir(), local_files_only=True),
        device=device,
        framework="pt",
    )
    parts = parse_pooling(heads.pooling)

    def classify(text: str, task: str) -> str:
        hidden = extract(text, return_tensors=True)  # [1, tokens, dim]
        mask = torch.ones(hidden.shape[:2], dtype=torch.long)
        probabilities = heads.predict(pool(hidden.to(torch.float32), mask, parts))[task]
        return heads.labels[task][int(probabilities.argmax())]

    classify(messages[0].body.text, "topic")  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for message in messages:
        for task in ("topic", "sentiment"):
            classify(message.body.text, task)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Measure("naive", len(messages), seconds, cpu_seconds=cpu)


def bench_flow(name: str, config: Config, lines: Sequence[bytes], repeat: int = 1) -> Measure:
    """The whole flow over `lines` from a file; with `repeat`, the median of that many
    runs (a shared machine's noise is larger than the differences worth seeing)."""
    runs = sorted((_run_flow(name, config, lines) for _ in range(repeat)), key=_seconds)
    median = runs[len(runs) // 2]
    return replace(median, runs_seconds=tuple(run.seconds for run in runs))


def _seconds(measure: Measure) -> float:
    return measure.seconds


def _run_flow(name: str, config: Config, lines: Sequence[bytes]) -> Measure:
    from bytewax.testing import run_main

    from flows.job import assemble
    from flows.metrics import counter_values
    from flows.runtime import tune_garbage_collector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        source = config.source.model_copy(update={"kind": "file", "path": path})
        # The models load in the flow, on its first batch, as part of what is timed.
        job = assemble(config.model_copy(update={"source": source}), load_models=False)
        tune_garbage_collector()
        started, cpu = time.perf_counter(), time.process_time()
        run_main(job.flow)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        job.close()
    m = job.observers.metrics
    read = int(sum(counter_values(m.messages_in).values()))
    scored = int(sum(counter_values(m.messages_scored).values()))
    return Measure(name, read, seconds, cpu_seconds=cpu, scored=scored)


def run_bench(
    config: Config,
    n: int = 2000,
    naive_n: int = 200,
    flow_n: int = 2000,
    overhead_n: int = 100_000,
    int8: bool = False,
    repeat: int = 3,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """All measures as one JSON-ready dict; `int8` adds the processors on the default
    model's int8 ONNX backend, on the same messages. The no-op flow, short and the
    most sensitive to a shared machine's noise, is the median of `repeat` runs."""
    import torch

    from flows.config import ProcessorConfig
    from processors.models.encoder import pick_device, pick_dtype

    batch_size = config.inference.batch_size
    messages = messages_from(headlines(n))
    device = pick_device(config.inference.device)
    results: dict[str, Any] = {
        "device": str(device),
        "dtype": str(pick_dtype(config.inference.dtype, device)).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "max_tokens": config.inference.max_tokens,
        "processors": [p.name for p in config.processors],
    }
    progress(f"naive baseline: {naive_n} messages, one pipeline call per message per task")
    naive = bench_naive(config, messages[:naive_n])
    results["naive"] = naive.figures()
    progress(f"processors: {n} messages in batches of {batch_size}")
    chain = bench_processors(config, messages, batch_size)
    results["processors"] = chain.figures()
    results["speedup_vs_naive"] = round(
        (chain.messages / chain.seconds) / (naive.messages / naive.seconds), 2
    )
    if int8:
        progress(f"processors on the int8 ONNX backend: {n} messages in batches of {batch_size}")
        onnx = config.model_copy(
            update={"inference": config.inference.model_copy(update={"backend": "onnx"})}
        )
        quantised = bench_processors(onnx, messages, batch_size)
        results["processors_int8"] = quantised.figures()
        results["int8_speedup_vs_fp32"] = round(chain.seconds / quantised.seconds, 2)
    progress(f"whole flow, configured chain: {flow_n} items")
    results["flow"] = bench_flow("flow", config, headlines(flow_n, distinct=True)).figures()
    progress(f"whole flow, no-op processor: {overhead_n} items, median of {repeat} runs")
    noop = config.model_copy(update={"processors": [ProcessorConfig(name="noop", kind="noop")]})
    results["flow_noop"] = bench_flow(
        "flow_noop", noop, headlines(overhead_n, seed=4, distinct=True), repeat
    ).figures()
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a readable table."""
    rows = [
        ("measure", "messages", "seconds", "msgs/s", "msgs/CPU-s", "batch p50 s", "batch p99 s")
    ]
    for key in ("naive", "processors", "processors_int8", "flow", "flow_noop"):
        if key not in results:
            continue
        f = results[key]
        rows.append(
            (
                key,
                f"{f['messages']:,}",
                f"{f['seconds']:.2f}",
                f"{f['msgs_per_s']:,.0f}",
                f"{f['msgs_per_cpu_s']:,.0f}" if "msgs_per_cpu_s" in f else "",
                str(f.get("batch_p50_s", "")),
                str(f.get("batch_p99_s", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"device {results['device']}, dtype {results['dtype']}, {results['torch_threads']} torch "
        f"threads, batch {results['batch_size']}; processors are "
        f"{results['speedup_vs_naive']}x the naive baseline"
        + (
            f"; int8 is {results['int8_speedup_vs_fp32']}x fp32"
            if "int8_speedup_vs_fp32" in results
            else ""
        )
        + (
            f"; GPU busy {results['processors']['gpu_busy']:.0%}"
            if "gpu_busy" in results["processors"]
            else ""
        )
    )
    runs = results["flow_noop"].get("runs_msgs_per_s")
    if runs:
        lines.append("no-op flow runs, msgs/s: " + ", ".join(f"{r:,.0f}" for r in runs))
    return "\n".join(lines)

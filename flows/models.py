"""From the config's processors to a `Chain`: each processor with its models built.

The serving side of model loading: it picks the runtime the config names (torch or
ONNX Runtime) and hands the model what it runs on. Offline work (training, export)
lives in `processors.training` and is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.config import Config, InferenceConfig, ModelConfig, ProcessorConfig
from processors.chain import Chain, ClassifyProcessor, Member, NoOpProcessor, Processor, Route
from processors.entities import EntityProcessor
from processors.models import Model, ModelLoadError

if TYPE_CHECKING:
    from processors.models.default import DefaultModel


def build_default_model(spec: ModelConfig, inference: InferenceConfig) -> DefaultModel:
    """The default model on the runtime `inference.backend` names; heads pick the pooling."""
    from processors.models.default import DefaultModel
    from processors.models.heads import ClassifierHeads, heads_path_for

    heads = ClassifierHeads.load(spec.heads or heads_path_for(spec.encoder))
    if inference.backend == "onnx":  # CPU only: ONNX Runtime, int8 weights
        from processors.models.onnx import load_onnx_encoder

        try:
            encoder = load_onnx_encoder(
                inference.onnx_path,
                spec.encoder,
                max_tokens=min(inference.max_tokens, heads.max_tokens),
                batch_size=inference.batch_size,
                pooling=heads.pooling,
                num_threads=inference.threads,
                max_batch_tokens=inference.max_batch_tokens,
            )
        except (FileNotFoundError, ValueError) as exc:
            raise ModelLoadError(str(exc)) from exc
    else:
        from processors.models.encoder import SentenceEncoder

        encoder = SentenceEncoder(
            spec.encoder,
            device=inference.device,
            # Never longer than the heads were trained on: that is what they know.
            max_tokens=min(inference.max_tokens, heads.max_tokens),
            batch_size=inference.batch_size,
            pooling=heads.pooling,
            dtype=inference.dtype,
            max_batch_tokens=inference.max_batch_tokens,
            compile=inference.compile,
            deltas=heads.encoder_deltas,
        )
    return DefaultModel(encoder, heads)


def build_model(spec: ModelConfig, task: str, inference: InferenceConfig) -> Model:
    """The model a processor's config names: the default, zero-shot NLI, or any classifier."""
    if spec.model == "default":
        return build_default_model(spec, inference)
    runtime = {
        "device": inference.device,
        "dtype": inference.dtype,
        "max_tokens": inference.max_tokens,
        "max_batch_tokens": inference.max_batch_tokens,
        "batch_size": inference.batch_size,
        "compile": inference.compile,
    }
    if spec.zero_shot is not None:
        from processors.models.zeroshot import ZeroShotModel

        zero_shot = spec.zero_shot
        return ZeroShotModel(
            spec.model,
            task,
            zero_shot.labels,
            zero_shot.hypothesis,
            zero_shot.multi_label,
            **runtime,
        )
    from processors.models.huggingface import HuggingFaceModel

    return HuggingFaceModel(spec.model, task, spec.label_map, **runtime)


def build_chain(config: Config) -> Chain:
    """The processors the config names, sharing one instance per distinct model; entity
    processors take their matcher from the job's live watchlist (the built-in catalog
    and the watched entities, rebuilt when the watchlist file changes).

    A model that cannot be loaded fails here, at start, naming its processor.
    """
    if config.inference.threads:
        import torch

        torch.set_num_threads(config.inference.threads)
    models: dict[tuple[str, str], Model] = {}

    def model_for(p: ProcessorConfig, index: int) -> Model:
        spec = p.models[index]
        # The default model serves every task from one encoder pass: share it.
        task_key = "*" if spec.model == "default" else p.task
        key = (task_key, spec.model_dump_json(exclude={"weight"}))
        if key not in models:
            try:
                models[key] = build_model(spec, p.task, config.inference)
            except ModelLoadError as exc:
                raise ModelLoadError(f"processor {p.name!r}: {exc}") from exc
        return models[key]

    def processor_for(p: ProcessorConfig) -> Processor:
        if p.kind == "noop":
            return NoOpProcessor(p.name)
        route = Route(frozenset(p.route.sources), frozenset(p.route.langs))
        if p.kind == "entities":
            watchlist = config.watchlist.live()
            watchlist.matcher()  # its automaton built now, not on the first batch
            return EntityProcessor(watchlist, p.name, route)
        return ClassifyProcessor(
            name=p.name,
            task=p.task,
            members=[Member(model_for(p, i), m.weight) for i, m in enumerate(p.models)],
            merge=p.merge,
            route=route,
        )

    return Chain([processor_for(p) for p in config.processors])

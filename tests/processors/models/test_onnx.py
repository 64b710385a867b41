"""The int8 ONNX encoder: exported into a temporary directory, checked against torch."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from flows.config import load_config
from flows.models import build_chain
from processors.models.encoder import SentenceEncoder
from processors.models.heads import ClassifierHeads
from processors.models.onnx import MANIFEST, OnnxEncoder, check_gate, load_onnx_encoder
from processors.training.export import accuracy_gate, export_onnx
from processors.training.train import find_data_dir, label_ids, load_csv
from tests.helpers import message

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("onnx")
    started = time.monotonic()
    export_onnx(out)
    return out, time.monotonic() - started


def _valid_slice(per_task: int) -> dict[str, tuple[list[str], list[str]]]:
    """Rows spread over each validation file (the files are grouped by label)."""
    out = {}
    for task in ("topic", "sentiment"):
        texts, names = load_csv(find_data_dir() / f"{task}_valid.csv")
        step = len(texts) // per_task
        out[task] = (texts[::step][:per_task], names[::step][:per_task])
    return out


def test_export_is_small_quick_and_complete(export: tuple[Path, float]) -> None:
    out, seconds = export
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["weights"] == "int8" and manifest["hidden_size"] == 384
    size = (out / "encoder.onnx").stat().st_size
    assert size == manifest["bytes"] < 40 * 1024 * 1024  # fp32 is 90 MB
    assert (out / "tokenizer.json").is_file()
    assert not list(out.glob("*.fp32.onnx"))
    assert seconds < 90  # about 25 s on 2 busy cores


def test_int8_agrees_with_fp32_on_a_valid_slice(export: tuple[Path, float]) -> None:
    # Activations are quantised per micro-batch, so labels near a boundary can flip
    # either way: measured on these rows, 91-94% of topics and 97% of sentiments agree,
    # at equal accuracy (on the full validation sets: -0.0 and -0.4 points).
    heads = ClassifierHeads.load()
    torch_encoder = SentenceEncoder(
        device="cpu", pooling=heads.pooling, deltas=heads.encoder_deltas
    )
    onnx_encoder = OnnxEncoder(export[0], pooling=heads.pooling, batch_size=7)
    for task, (texts, names) in _valid_slice(100).items():
        truth = torch.from_numpy(label_ids(task, names))
        fp32 = heads.predict(torch_encoder.encode(texts))[task]
        int8 = heads.predict(onnx_encoder.encode(texts))[task]
        assert torch.allclose(int8.sum(-1), torch.ones(len(texts)), atol=1e-5)
        assert (int8.argmax(-1) == fp32.argmax(-1)).float().mean().item() >= 0.9, task
        assert (int8 - fp32).abs().mean().item() < 0.03, task
        accuracy = {
            name: (p.argmax(-1) == truth).float().mean().item()
            for name, p in (("fp32", fp32), ("int8", int8))
        }
        assert abs(accuracy["int8"] - accuracy["fp32"]) <= 0.05, (task, accuracy)
    assert onnx_encoder.encode([]).shape == (0, heads.dim)


def test_the_gate_records_both_backends_and_guards_the_int8_export(
    export: tuple[Path, float], tmp_path: Path
) -> None:
    gate = accuracy_gate(export[0], find_data_dir(), limit=40)
    for task in ("topic", "sentiment"):
        assert gate[task]["torch"]["n"] == gate[task]["onnx"]["n"] == 40
    assert json.loads((export[0] / MANIFEST).read_text())["gate"] == gate

    manifest = json.loads((export[0] / MANIFEST).read_text())
    unchecked = {k: v for k, v in manifest.items() if k != "gate"}
    failed = {**manifest, "gate": {**gate, "passed": False}}
    passed = {**manifest, "gate": {**gate, "passed": True}}
    for content, refusal in ((unchecked, "no accuracy check"), (failed, "not offered")):
        (tmp_path / MANIFEST).write_text(json.dumps(content))
        with pytest.raises(ValueError, match=refusal):
            check_gate(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps(passed))
    check_gate(tmp_path)


def test_onnx_backend_scores_through_the_config(
    export: tuple[Path, float],
    tmp_path: Path,
) -> None:
    # The full-validation verdict is measured by `finsentry export-onnx`; here, wiring.
    onnx_dir = tmp_path / "export"
    shutil.copytree(export[0], onnx_dir)
    manifest = json.loads((onnx_dir / MANIFEST).read_text())
    (onnx_dir / MANIFEST).write_text(json.dumps({**manifest, "gate": {"passed": True}}))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump({"inference": {"backend": "onnx", "onnx_path": str(onnx_dir), "threads": 2}})
    )
    chain = build_chain(load_config(config_file, env={}))
    model = chain.processors[0].members[0].model
    assert isinstance(model.encoder, OnnxEncoder)
    texts = ["Oil slides as OPEC+ weighs output hike", "Goldman downgrades $TSLA to sell"]
    result = chain.process([message(t, id=str(i)) for i, t in enumerate(texts)])
    assert len(result.scored) == 2 and not result.dead_letters
    for scored in result.scored:
        assert [r.task for r in scored.trailer] == ["topic", "sentiment", "entities"]
        classified = scored.trailer[:2]
        assert all(sum(r.scores.values()) == pytest.approx(1.0, abs=1e-3) for r in classified)
    assert [m.trailer[-1].label for m in result.scored] == ["", "GS,TSLA"]

    # A missing export stops the job at start, naming the command that makes one.
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="finsentry export-onnx"):
        load_onnx_encoder(missing)
    assert not missing.exists()

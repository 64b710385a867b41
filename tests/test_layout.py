"""The architecture's boundaries, checked on the source: what may import what."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

ROOT = ROOT
OFFLINE = "processors.training"
# The CLI's offline commands are the one door from flows/ to the offline package.
OFFLINE_DOORS = {ROOT / "flows" / "cli" / "offline.py"}
EDGE_LIBRARIES = ("bytewax", "kafka", "http", "urllib", "requests", "prometheus_client")


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, at any depth of its code (function-level too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_no_serving_module_imports_offline_code() -> None:
    serving = [
        path
        for path in modules("flows") + modules("processors")
        if path not in OFFLINE_DOORS and (ROOT / "processors" / "training") not in path.parents
    ]
    assert len(serving) > 30
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in serving
        for name in imported(path)
        if name == OFFLINE or name.startswith(OFFLINE + ".")
    ]
    assert offenders == []


def test_processors_import_no_bytewax_kafka_or_http() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules("processors")
        for name in imported(path)
        if name.split(".")[0] in EDGE_LIBRARIES
    ]
    assert offenders == []


@pytest.mark.slow  # builds the default chain, models and all
def test_building_a_job_loads_no_offline_code() -> None:
    probe = (
        "import sys; from flows.config import load_config; from flows.job import assemble;"
        "assemble(load_config(env={}));"
        f"print(sorted(m for m in sys.modules if m.startswith({OFFLINE!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

"""requirements.lock must pin, with hashes, what pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import ROOT

ROOT = ROOT
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked() -> dict[str, tuple[Version, list[str]]]:
    """Name -> (version, hashes) of every entry in the lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    name = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            entries[name] = (Version(match[2]), [])
        elif name and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            entries[name][1].append(digest[1])
        elif not line.startswith(" "):
            name = None
    return entries


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]["dev"]
    return [Requirement(spec) for spec in project["dependencies"] + extras]


def test_every_dependency_is_locked_within_its_range() -> None:
    lock = locked()
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is in pyproject.toml but not in requirements.lock"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}: the lock has {version}, pyproject.toml asks for {requirement.specifier}"
        )


def test_every_locked_package_has_a_hash() -> None:
    lock = locked()
    assert len(lock) > 30
    assert [name for name, (_, hashes) in lock.items() if not hashes] == []


def test_torch_is_the_cpu_build_that_setup_pins() -> None:
    version = locked()["torch"][0]
    assert version.local == "cpu"
    pin = re.search(r'torch_pin="torch==([^"]+)"', (ROOT / "setup.sh").read_text())
    assert pin and Version(pin[1]) == Version(version.public)

"""The hashed lock files say what the requirements say, on every Python the app runs on.

`make install` installs `requirements-dev.lock` and the pipeline's build installs
`requirements.lock`, both with `--require-hashes`; `make lock` renews them from
`requirements*.txt`. These checks catch a requirement changed without `make lock`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# The dev venv's Python (pyproject's floor) and production's (Flex Consumption, Python 3.13).
PYTHONS = ("3.11", "3.13")
PAIRS = (("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock"))
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)(?:\s*;\s*(.*?))?\s*\\?$")


def environment(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux"}


def requirements(name: str) -> list[Requirement]:
    """The requirements of `name`, following `-r` includes."""
    found: list[Requirement] = []
    for line in (REPO / name).read_text(encoding="utf-8").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found.extend(requirements(line.removeprefix("-r ").strip()))
            continue
        found.append(Requirement(line))
    return found


def pins(lock: str) -> list[tuple[str, Version, Marker | None, int]]:
    """(name, version, marker, hash count) of every package in a lock file."""
    entries: list[tuple[str, Version, Marker | None, int]] = []
    lines = (REPO / lock).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if not match:
            continue
        hashes = 0
        for following in lines[number + 1 :]:
            if not following.startswith("    --hash="):
                break
            hashes += 1
        marker = Marker(match.group(3)) if match.group(3) else None
        entries.append((canonicalize_name(match.group(1)), Version(match.group(2)), marker, hashes))
    return entries


def pinned(lock: str, python: str) -> dict[str, Version]:
    """What the lock installs on `python` (Linux)."""
    chosen: dict[str, Version] = {}
    for name, version, marker, _ in pins(lock):
        if marker is None or marker.evaluate(environment(python)):
            assert name not in chosen, f"{lock} pins {name} twice for Python {python}"
            chosen[name] = version
    return chosen


@pytest.mark.parametrize(("source", "lock"), PAIRS)
@pytest.mark.parametrize("python", PYTHONS)
def test_every_requirement_is_pinned_in_its_lock_within_its_range(source, lock, python):
    installed = pinned(lock, python)
    for requirement in requirements(source):
        if requirement.marker is not None and not requirement.marker.evaluate(environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{requirement} is not in {lock} for Python {python}: run `make lock`"
        assert requirement.specifier.contains(installed[name], prereleases=True), (
            f"{lock} pins {name}=={installed[name]}, outside {requirement} for Python {python}: run `make lock`"
        )


@pytest.mark.parametrize("lock", [lock for _, lock in PAIRS])
def test_every_pin_carries_hashes(lock):
    entries = pins(lock)
    assert len(entries) > 20, f"{lock} looks empty"
    assert [name for name, _, _, hashes in entries if hashes == 0] == []


@pytest.mark.parametrize("python", PYTHONS)
def test_the_runtime_lock_installs_the_same_versions_as_the_dev_lock(python):
    runtime, dev = pinned("requirements.lock", python), pinned("requirements-dev.lock", python)
    assert {name: version for name, version in runtime.items() if dev.get(name) != version} == {}


def test_the_linters_are_pinned_exactly():
    exact = {canonicalize_name(r.name): str(r.specifier) for r in requirements("requirements-dev.txt")}
    for tool in ("ruff", "mypy", "pytest-timeout"):
        assert exact[tool].startswith("=="), f"{tool} is not pinned exactly: {exact[tool]}"


def test_production_runs_the_worker_and_sdk_of_python_313():
    on_313 = pinned("requirements.lock", "3.13")
    assert "azure-functions-runtime" in on_313
    assert on_313["azure-functions"].major == 2
    assert pinned("requirements.lock", "3.11")["azure-functions"].major == 1

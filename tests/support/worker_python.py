"""Find the Python that Azure's 3.13+ worker runs on, for the worker's own venv (`make worker`).

Looks, in order, at `WORKER_PYTHON`, the pyenv versions (`$PYENV_ROOT`, `pyenv root`,
`~/.pyenv`), then `python3.13` on PATH, and keeps the newest patch release that runs and has
`venv`. Prints its path; when there is none, exits 1 with one paragraph saying what to install,
so `make test` fails loudly instead of skipping the worker-index test. Standard library only:
the Makefile runs it before any venv exists.

Run: `python3 tests/support/worker_python.py [3.13]`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_VERSION = "3.13"
PROBE = "import sys, venv; print('%d.%d' % sys.version_info[:2])"


def pyenv_roots() -> list[Path]:
    """Where pyenv keeps its versions, from the environment, `pyenv root` and the default place."""
    roots = [os.environ.get("PYENV_ROOT", "")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            roots.append(subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=10).stdout.strip())
    roots.append(str(Path.home() / ".pyenv"))
    unique: list[Path] = []
    for root in roots:
        if root and Path(root) not in unique:
            unique.append(Path(root))
    return unique


def _patch_key(path: Path, version: str) -> tuple[int, ...]:
    """Sort key of a pyenv version folder like `3.13.2`: its numbers (newest last)."""
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name.removeprefix(version)))


def candidates(version: str) -> list[Path]:
    """Interpreters that may be `version`, most wanted first (not yet checked)."""
    found: list[Path] = []
    explicit = os.environ.get("WORKER_PYTHON")
    if explicit:
        found.append(Path(explicit))
    for root in pyenv_roots():
        pattern = f"{version}*/bin/python{version}"
        releases = [p for p in (root / "versions").glob(pattern) if re.fullmatch(rf"{version}(\.\d+)?", p.parts[-3])]
        found.extend(sorted(releases, key=lambda p: _patch_key(p, version), reverse=True))
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:  # a pyenv shim answers only for the selected version
        found.append(Path(on_path))
    return found


def runs_as(python: Path, version: str) -> bool:
    """True when `python` starts, is `version` and has the venv module."""
    try:
        answer = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return answer.returncode == 0 and answer.stdout.strip() == version


def find_python(version: str = DEFAULT_VERSION) -> Path | None:
    """The first candidate that really is Python `version`, or None."""
    return next((python for python in candidates(version) if runs_as(python, version)), None)


def main(argv: list[str]) -> int:
    version = argv[1] if len(argv) > 1 else DEFAULT_VERSION
    python = find_python(version)
    if python is None:
        looked = ", ".join(str(p) for p in candidates(version)) or "nothing found"
        print(
            f"No Python {version} on this machine (looked at WORKER_PYTHON, the pyenv versions under "
            f"{', '.join(map(str, pyenv_roots()))} and python{version} on PATH: {looked}). The worker-index "
            f"test runs Azure's Python worker (azure-functions-runtime), which needs Python {version}: "
            f"install it (`pyenv install {version}`, or Debian's python{version} and python{version}-venv) "
            f"or point WORKER_PYTHON at one.",
            file=sys.stderr,
        )
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

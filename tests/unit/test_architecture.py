"""The layers hold: `shared/` is the framework-free core, `functions/` the thin Azure edge, `wiring` the app's root.

- `shared/` imports neither `azure.functions`, `functions`, the app's wiring (`wiring`, `function_app`)
  nor `devhost`: the core runs, and is tested, without the Functions host or the local stand-ins.
- `functions/` imports no `shared.store` module: a trigger reaches the store only through a core function.

Every module is read as an AST, so an import inside a function or under `TYPE_CHECKING` counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE_MUST_NOT_IMPORT = ("azure.functions", "functions", "wiring", "function_app", "devhost", "fakes")
EDGE_MUST_NOT_IMPORT = ("shared.store",)


def modules(package: str) -> list[Path]:
    return sorted(path for path in (REPO / package).rglob("*.py") if "__pycache__" not in path.parts)


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """Each module an import statement of `path` names (`from a import b` names `a` and `a.b`)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the module's own package
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in modules(package):
        for line, name in imported_names(path):
            if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden):
                found.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return sorted(set(found))


@pytest.mark.parametrize(
    ("package", "forbidden"), [("shared", CORE_MUST_NOT_IMPORT), ("functions", EDGE_MUST_NOT_IMPORT)]
)
def test_package_imports_stay_on_their_side(package, forbidden):
    assert modules(package), f"{package}/ has no modules: the test would prove nothing"
    assert violations(package, forbidden) == []


def test_the_check_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The walker is not vacuous: plain, from, nested and relative imports are all reported."""
    package = tmp_path / "shared" / "inner"
    package.mkdir(parents=True)
    (package / "mod.py").write_text(
        "import azure.functions as func\n"
        "from wiring import get_services\n"
        "def late():\n    from devhost import queues\n    from fakes import sandbox\n"
        "from ... import functions\n"
        "from shared import store\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert [v.split(" imports ")[1] for v in violations("shared", CORE_MUST_NOT_IMPORT)] == [
        "azure.functions",
        "wiring",
        "wiring.get_services",
        "devhost",
        "devhost.queues",
        "fakes",
        "fakes.sandbox",
        "functions",
    ]
    assert violations("shared", EDGE_MUST_NOT_IMPORT) == ["shared/inner/mod.py:7 imports shared.store"]

"""Cold start: the time to import `function_app` in a fresh interpreter, against what it pulls in minus our code.

Each sample is a new `python` process that times the imports with `perf_counter` (the
interpreter's own start is left out). Reference, same run, alternating with the app: a process
importing, in the same order, every module that `import function_app` loads except our own
(`function_app`, `functions.*`, `shared.*`): azure.functions, pydantic, requests and the standard
library modules they and we need. The difference is our code: its module bodies, and building
the pydantic models and the app's registrations. A second, informational reference imports just
the named packages (`azure.functions, pydantic, requests, json, hmac`). Bytecode is cached in a
temporary `PYTHONPYCACHEPREFIX` warmed by one untimed run of each, so every sample reads cached
bytecode, as a deployed app does after its first start, whatever `PYTHONDONTWRITEBYTECODE` says.
The app's sample also lists which heavy SDKs were imported at start.

Run: `.venv/bin/python -m bench.cold_start [--quick] [--repeat 10]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3
OUR_PACKAGES = frozenset({"function_app", "functions", "shared"})
NAMED_FLOOR = ["azure.functions", "pydantic", "requests", "json", "hmac"]
HEAVY_SDKS = (
    "azure.storage.queue",
    "azure.data.tables",
    "pyodbc",
    "azure.identity",
    "azure.keyvault.secrets",
    "azure.communication.email",
)
PROBE = """
import importlib, json, sys, time
names = json.loads(sys.argv[1])
before = set(sys.modules)
started = time.perf_counter()
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError:
        failed.append(name)
elapsed = time.perf_counter() - started
loaded = [name for name in sys.modules if name not in before]
print(json.dumps({"seconds": elapsed, "loaded": loaded, "failed": failed}))
"""


@dataclass(frozen=True)
class Sample:
    """One fresh interpreter: seconds spent importing, modules it loaded, names that would not import."""

    seconds: float
    loaded: list[str]
    failed: list[str]


def sample(modules: list[str], pycache: str) -> Sample:
    """Import `modules` in order in a new interpreter (cached bytecode under `pycache`)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {modules[:3]}… failed in a fresh interpreter:\n{completed.stderr[-2000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return Sample(float(report["seconds"]), [str(m) for m in report["loaded"]], [str(m) for m in report["failed"]])


def median_ms(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples) * 1000


def min_ms(samples: list[Sample]) -> float:
    return min(s.seconds for s in samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 samples of each instead of 10")
    parser.add_argument("--repeat", type=int, default=10, help="samples of each import")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    runs: dict[str, list[Sample]] = {"app": [], "floor": [], "named": []}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        first = sample(["function_app"], pycache)  # warms the bytecode and file caches; not timed
        floor = [name for name in first.loaded if name.split(".")[0] not in OUR_PACKAGES]
        imports = {"app": ["function_app"], "floor": floor, "named": NAMED_FLOOR}
        for name in ("floor", "named"):
            sample(imports[name], pycache)
        for _ in range(repeat):  # interleaved, so a busy moment on the machine hits each of them
            for name, modules in imports.items():
                runs[name].append(sample(modules, pycache))
    app = runs["app"][-1]
    ours = [name for name in app.loaded if name.split(".")[0] in OUR_PACKAGES]
    importable = len(floor) - len(runs["floor"][-1].failed)
    ratio = median_ms(runs["app"]) / median_ms(runs["floor"])
    print(f"cold start: import time in a fresh interpreter, median of {repeat} (bytecode cached)")
    print(f"  {'':<62}{'median ms':>10}{'min ms':>9}")
    rows = (
        ("app", f"import function_app ({len(app.loaded)} modules, {len(ours)} ours)"),
        ("floor", f"reference: the {importable} other modules it loads, same order"),
        ("named", f"info: import {', '.join(NAMED_FLOOR)}"),
    )
    for key, label in rows:
        print(f"  {label:<62}{median_ms(runs[key]):>10.1f}{min_ms(runs[key]):>9.1f}")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio app / reference {ratio:.2f} (target ≤ {TARGET_RATIO:g}: {verdict});", end="")
    print(f" our code ≈ {median_ms(runs['app']) - median_ms(runs['floor']):.1f} ms;", end="")
    print(f" app / named packages {median_ms(runs['app']) / median_ms(runs['named']):.2f}")
    print(f"  ratio of the minimums (least disturbed samples) {min_ms(runs['app']) / min_ms(runs['floor']):.2f}")
    heavy = [name for name in HEAVY_SDKS if name in app.loaded]
    print(f"  heavy SDKs not imported at start: {', '.join(n for n in HEAVY_SDKS if n not in heavy) or 'none'}")
    print(f"  heavy SDKs imported at start: {', '.join(heavy) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

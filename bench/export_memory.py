"""Memory of the CSV export (`GET /api/ops/leads.csv`) at 100,000 leads against 10,000, in the same run.

Two SQLite files get the real schema and N leads written in bulk exactly as `store_lead` writes
them (`bench.store_scale.bulk_insert`: realistic answers, created over the 20 days before now).
Each export of the last 30 days then runs in a fresh interpreter, so no measurement inherits
another's memory, twice: once under `tracemalloc` (the peak of Python allocations during the
export), once without it (time, and RSS growth: the peak resident set, reset by
`/proc/self/clear_refs` after start-up where Linux allows, minus the resident set before).

Two ways of exporting are measured:

- `stream`: `write_leads_csv` into a file on disk: the store read in key-set pages of 1,000, two
  passes, one page of leads alive at a time. This is what must stay flat: peak at 100 k at most 1.3 times that at 10 k.
- `route`: `leads_csv` as the route calls it: into a `SpooledTemporaryFile` (memory up to 8 MiB, then
  disk), then the whole body read back for `func.HttpResponse`, which takes a body whole. Its peak
  holds the body (the CSV's size) on top of the stream's, and below 8 MiB the spooled copy too; for
  information, no target.

Run: `.venv/bin/python -m bench.export_memory [--quick]` (`--quick`: 2,000 and 20,000 leads). Files go
to a temporary folder, deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.store_scale import bulk_insert, migrated_store, synthetic_rows

TARGET_RATIO = 1.3
SPAN_DAYS = 20
MODES = ("stream", "route")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """One export in a fresh process."""

    leads: int
    mode: str
    rows: int
    csv_bytes: int
    seconds: float
    peak_python: int  # bytes, from the traced run
    rss_growth: int  # bytes, from the untraced run


def build(folder: Path, leads: int, now: float) -> Path:
    path = folder / f"leads-{leads}.db"
    migrated_store(path)
    bulk_insert(path, synthetic_rows(leads, now, span_seconds=SPAN_DAYS * 86_400))
    return path


def measure(path: Path, leads: int, mode: str, until: str) -> Measured:
    traced = _child(path, mode, until, traced=True)
    plain = _child(path, mode, until, traced=False)
    if traced["rows"] != leads or plain["rows"] != leads:
        raise SystemExit(f"{mode} export of {leads} leads wrote {traced['rows']} / {plain['rows']} rows")
    return Measured(
        leads,
        mode,
        int(plain["rows"]),
        int(plain["csv_bytes"]),
        float(plain["seconds"]),
        int(traced["peak_python"]),
        int(plain["rss_growth"]),
    )


def _child(path: Path, mode: str, until: str, traced: bool) -> dict[str, int | float]:
    command = [sys.executable, "-m", "bench.export_memory", "--child", str(path), mode, until]
    done = subprocess.run([*command, "--traced"] if traced else command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"export child failed ({mode}, {path.name}):\n{done.stderr[-2000:]}")
    result: dict[str, int | float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_child(path: str, mode: str, until: str, traced: bool) -> None:
    """One export in this (fresh) process; prints its figures as one JSON line."""
    from shared.ops.export import export_range, leads_csv, write_leads_csv
    from shared.store import Store
    from shared.store.sqlite import SqliteBackend

    store = Store(SqliteBackend(path))
    store.ping()  # connection open and schema read before the baseline
    end = datetime.fromisoformat(until)
    within = export_range(None, until, None, end)
    out_path = Path(path).with_suffix(f".{mode}.csv")
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    if mode == "stream":
        with out_path.open("wb") as out:
            rows = write_leads_csv(store, within, {}, out).rows
        size = out_path.stat().st_size
    else:
        exported = leads_csv(store, None, until, None, {}, now=end)
        rows, size = exported.rows, len(exported.body)
        del exported
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    growth = (_status_kib("VmHWM") - before) * 1024
    out_path.unlink(missing_ok=True)
    print(json.dumps({"rows": rows, "csv_bytes": size, "seconds": seconds, "peak_python": peak, "rss_growth": growth}))


def _reset_peak_rss() -> None:
    """Start VmHWM again from the current resident set (Linux ≥ 4.0); a no-op where refused."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def report(results: list[Measured], small: int, large: int) -> None:
    print(f"\nCSV export of the last 30 days from SQLite (leads created over {SPAN_DAYS} days), a fresh process each")
    heading = ("leads", "mode", "rows", "CSV MiB", "s", "peak Python MiB", "RSS growth MiB")
    print("{:>8} {:>7} {:>8} {:>8} {:>6} {:>16} {:>15}".format(*heading))
    for m in results:
        print(
            f"{m.leads:>8,} {m.mode:>7} {m.rows:>8,} {m.csv_bytes / MIB:>8.1f} {m.seconds:>6.2f}"
            f" {m.peak_python / MIB:>16.2f} {m.rss_growth / MIB:>15.2f}"
        )
    by = {(m.leads, m.mode): m for m in results}
    print()
    for mode in MODES:
        ref, big = by[(small, mode)], by[(large, mode)]
        python_ratio = big.peak_python / max(ref.peak_python, 1)
        rss_ratio = big.rss_growth / max(ref.rss_growth, 1)
        if mode == "stream":
            verdict = "ok" if python_ratio <= TARGET_RATIO else "MISSED"
            target = f"(target ≤ {TARGET_RATIO}) {verdict}"
        else:
            target = "(information: the body is the CSV's size, held whole for the HTTP response)"
        print(f"{mode:>7}: peak Python {large:,} / {small:,} = {python_ratio:.2f} {target}; RSS growth {rss_ratio:.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 leads")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "MODE", "UNTIL"), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, mode, until = args.child
        run_child(path, mode, until, args.traced)
        return 0
    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        now = time.time()
        until = (datetime.fromtimestamp(now, UTC) + timedelta(minutes=1)).isoformat()
        paths = {}
        for leads in (small, large):
            started = time.perf_counter()
            paths[leads] = build(folder, leads, now)
            print(f"built {leads:,} leads in {time.perf_counter() - started:.1f} s", flush=True)
        results = [measure(paths[leads], leads, mode, until) for mode in MODES for leads in (small, large)]
        report(results, small, large)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

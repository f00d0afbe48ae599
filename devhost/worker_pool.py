"""The Python worker's side of one worker process: its thread pool, and the app's CPU counted apart.

In Azure the Functions host (not Python) receives HTTP requests and queue messages and hands each
invocation to a language worker process, which runs synchronous functions on a thread pool of
`PYTHON_THREADPOOL_THREAD_COUNT` threads, by default min(32, cores + 4) (azure-functions-python-worker,
`_get_sync_tp_max_workers`). Invocations beyond that wait for a thread. `WorkerPool` is that limit
for the devhost: every invocation (`devhost.invocation.invoke`) takes a slot first.

It also keeps the app's own CPU time apart from the host's: the thread CPU time spent inside each
function, per function. What the process spends outside them (receiving and deleting queue
messages, serving HTTP, the timers' clocks) is the host's work in Azure. With `DEVHOST_STATS_DIR`
set, each worker process writes its figures there as `<group>.json` about once a second and when it
stops, so a benchmark can read them from every worker process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
STATS_DIR_SETTING = "DEVHOST_STATS_DIR"
MAX_THREADS = 32


def thread_count(environ: Mapping[str, str], cpus: int | None = None) -> int:
    """The worker's pool size: `PYTHON_THREADPOOL_THREAD_COUNT` when set (1-32), else min(32, cores + 4)."""
    raw = environ.get(THREAD_COUNT_SETTING, "").strip()
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
            raise ValueError(
                f"setting {THREAD_COUNT_SETTING} must be a whole number from 1 to {MAX_THREADS}, not {raw!r}"
            )
        return int(raw)
    return min(MAX_THREADS, (cpus if cpus is not None else os.cpu_count() or 1) + 4)


@dataclass
class FunctionFigures:
    invocations: int = 0
    cpu_seconds: float = 0.0


@dataclass
class WorkerPool:
    """At most `size` invocations at once in this process; the app's CPU per function."""

    size: int
    group: str = "all"
    stats_file: Path | None = None
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _figures: dict[str, FunctionFigures] = field(init=False, repr=False, default_factory=dict)
    _written_at: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.size)

    @contextmanager
    def slot(self, function_name: str) -> Iterator[None]:
        """Hold one of the pool's threads for an invocation, and count its thread CPU time as the app's."""
        with self._slots:
            started = time.thread_time()
            try:
                yield
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    figures = self._figures.setdefault(function_name, FunctionFigures())
                    figures.invocations += 1
                    figures.cpu_seconds += spent
                self._maybe_write()

    def snapshot(self) -> dict[str, object]:
        """Process CPU, the app's CPU per function, and what is left: the host's work."""
        with self._lock:
            functions = {
                name: {"invocations": f.invocations, "cpu_seconds": round(f.cpu_seconds, 6)}
                for name, f in self._figures.items()
            }
            app = sum(f.cpu_seconds for f in self._figures.values())
        process = time.process_time()
        return {
            "group": self.group,
            "pid": os.getpid(),
            "threads": self.size,
            "process_cpu_seconds": round(process, 6),
            "app_cpu_seconds": round(app, 6),
            "host_cpu_seconds": round(max(process - app, 0.0), 6),
            "functions": functions,
        }

    def write(self) -> None:
        """Write the snapshot to `stats_file` (atomically), if there is one."""
        if self.stats_file is None:
            return
        partial = self.stats_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        os.replace(partial, self.stats_file)

    def _maybe_write(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.stats_file is None or now - self._written_at < 1.0:
                return
            self._written_at = now
        with suppress(OSError):  # figures for benchmarks only: never fail an invocation over them
            self.write()


_pool = WorkerPool(min(MAX_THREADS, (os.cpu_count() or 1) + 4))


def configure(environ: Mapping[str, str], group: str = "all") -> WorkerPool:
    """Size this process's pool from the settings; the one `invoke` uses from now on."""
    global _pool
    folder = environ.get(STATS_DIR_SETTING, "").strip()
    stats_file = Path(folder) / f"{group.replace(':', '-')}.json" if folder else None
    _pool = WorkerPool(thread_count(environ), group, stats_file)
    if stats_file is not None:
        threading.Thread(target=_write_every_second, args=(_pool,), name="devhost-stats", daemon=True).start()
    return _pool


def _write_every_second(pool: WorkerPool) -> None:
    """Keep the figures file fresh even when no invocation ends (a reader sees at most a second's lag)."""
    while _pool is pool:
        time.sleep(1.0)
        with suppress(OSError):
            pool.write()


def current() -> WorkerPool:
    """This process's pool."""
    return _pool

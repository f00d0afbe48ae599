"""Child processes tied to the process that starts them: when it dies, however it dies, they get SIGTERM.

`spawn_tied` is `subprocess.Popen` plus Linux's `PR_SET_PDEATHSIG`, set in the child between fork
and exec (the setting survives exec, so it holds for node, python, anything). It covers the case
no `finally` can: the parent killed with SIGKILL. `make run`, the test fixtures and the benchmark
stacks all start their services through it, so none of them outlives whoever started it.

The kernel sends the signal when the *thread* that forked the child ends, not the process, so
`spawn_tied` refuses any thread but the main one. Where `prctl` is missing (not Linux) the child
is started untied, as plain `Popen` would.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM  # each service stops cleanly on it, and the devhost's drain is bounded


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()  # resolved here, so the child does no lookup between fork and exec


def can_tie() -> bool:
    """Whether children can be tied here (Linux with `prctl`)."""
    return _PRCTL is not None


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs before exec: ask for DEATH_SIGNAL when the parent goes, and check it is still there."""
    prctl = _PRCTL
    assert prctl is not None

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will signal us
            os._exit(1)

    return tie


def spawn_tied(command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(command, **popen)` whose child gets SIGTERM when this process dies.

    Must be called on the main thread (the tie is to the spawning thread). `preexec_fn` is taken;
    every other `Popen` argument (`process_group`, `env`, `stdout` …) passes through.
    """
    if "preexec_fn" in popen:
        raise TypeError("spawn_tied sets preexec_fn itself")
    if _PRCTL is None:
        return subprocess.Popen(command, **popen)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("spawn_tied must run on the main thread: a tied child dies with the thread that started it")
    return subprocess.Popen(command, preexec_fn=_die_with(os.getpid()), **popen)

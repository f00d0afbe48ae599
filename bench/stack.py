"""Start the local stack for a benchmark: Azurite, the sandbox Graph API, an SMTP sink and the devhost."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.smtp_sink import SmtpSink
from tests.support.azurite import Azurite, start_azurite
from tests.support.devhost_process import DevhostProcess, devhost_env, start_devhost

SECRET = LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"]
TOKEN = LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
PAGE = LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]


@dataclass
class Stack:
    """A running local stack and where its parts write."""

    azurite: Azurite
    graph: RunningSandbox
    mail: SmtpSink
    devhost: DevhostProcess
    workdir: Path

    @property
    def db(self) -> Path:
        return self.workdir / "leads.db"

    @property
    def webhook(self) -> str:
        return f"{self.devhost.url}/api/webhook/facebook/leads"


@contextmanager
def local_stack(**settings: str) -> Iterator[Stack]:
    """Everything on 127.0.0.1, stopped at the end; `settings` override the devhost's environment.

    Each devhost worker process writes its CPU figures (`devhost/worker_pool.py`) into `<workdir>/stats`.
    """
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    (workdir / "stats").mkdir()
    overrides = {
        "EMAIL_SENDER": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_STARTTLS": "false",
        "DEVHOST_STATS_DIR": str(workdir / "stats"),
        **settings,
    }
    azurite = start_azurite(str(workdir / "azurite"))
    graph = serve(SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True))
    mail = SmtpSink(workdir / "mail", "127.0.0.1", 0)
    devhost: DevhostProcess | None = None
    try:
        mail.start()
        env = devhost_env(
            azurite.connection_string, graph.url, str(workdir / "leads.db"), SMTP_PORT=str(mail.port), **overrides
        )
        devhost = start_devhost(env, workdir / "devhost.log")
        yield Stack(azurite, graph, mail, devhost, workdir)
    finally:
        if devhost is not None:
            devhost.stop()
        mail.stop()
        graph.close()
        azurite.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean in milliseconds of `values` given in seconds."""
    ms = [v * 1000 for v in values]
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
        "mean": statistics.fmean(ms) if ms else float("nan"),
    }

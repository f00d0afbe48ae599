"""Serve a `SandboxGraph` over HTTP with waitress in a daemon thread, and stop it cleanly.

The waitress event loop runs in one thread and is stopped from inside that thread: `close()`
sets a flag and wakes the loop, which then closes its sockets and the worker threads. A lock
keeps the wake-up from racing the loop's own shutdown (which closes the wake-up pipe).
"""

from __future__ import annotations

import threading
from types import TracebackType

from waitress import wasyncore
from waitress.server import create_server

from fakes.sandbox.state import SandboxGraph
from fakes.sandbox.wsgi import SandboxApp

_POLL_SECONDS = 0.5


class RunningSandbox:
    """A sandbox being served: `url` (e.g. `http://127.0.0.1:7072`), `port`, `sandbox`; `close()` stops it."""

    def __init__(self, sandbox: SandboxGraph, host: str, port: int, threads: int = 16) -> None:
        self.sandbox = sandbox
        self._app = SandboxApp(sandbox)
        self._server = create_server(self._app, host=host, port=port, threads=threads, ident="sandbox-graph")
        self.port: int = int(self._server.effective_port)
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - only a display name
        self.url = f"http://[{shown}]:{self.port}" if ":" in shown else f"http://{shown}:{self.port}"
        self._stop = threading.Event()
        self._closed = False
        self._closing = threading.Lock()
        self._loop_done = False
        self._thread = threading.Thread(target=self._run, name=f"sandbox-graph-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        socket_map = self._server._map
        try:
            while not self._stop.is_set() and socket_map:
                wasyncore.loop(timeout=_POLL_SECONDS, map=socket_map, count=1)
        finally:
            with self._closing:
                self._loop_done = True
                self._server.close()
            for channel in list(socket_map.values()):
                channel.handle_close()
            self._server.task_dispatcher.shutdown(timeout=5)

    def close(self) -> None:
        """Stop serving: cut short slow answers, close every socket and join the server thread."""
        if self._closed:
            return
        self._closed = True
        self._app.stopping.set()
        with self._closing:
            self._stop.set()
            if not self._loop_done:
                self._server.pull_trigger()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def serve(sandbox: SandboxGraph, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Start serving `sandbox` on host:port (0 picks a free port); listening when this returns."""
    return RunningSandbox(sandbox, host, port)

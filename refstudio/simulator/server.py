"""Run the simulated WaveSpeed + Runway server: in a background thread (tests) or in the
foreground (CLI)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from refstudio.simulator.handler import SimHandler
from refstudio.simulator.runway import RunwayBook
from refstudio.simulator.state import SimState, SimulatorConfig

__all__ = ["SimHTTPServer", "Simulator", "run_forever"]


class SimHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that remembers its open connections so ``stop`` can end them."""

    daemon_threads = True
    # Many clients connect at once in load tests; a short backlog would refuse some of them.
    request_queue_size = 1024
    # stop() must not wait for idle keep-alive connections; it shuts them down instead.
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: SimState, runway: RunwayBook | None = None
    ) -> None:
        self.state = state
        self.runway = runway if runway is not None else RunwayBook(state)
        self.stopping = False
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, SimHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        self.state.connection_opened()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            known = request in self._conns
            self._conns.discard(request)
        if known:
            self.state.connection_closed()
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler thread blocked on a keep-alive socket; each then closes its own."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Simulator:
    """A WaveSpeed-protocol server for ``runwayml/gen4-image`` on a local port.

    Use as a context manager (or call :meth:`start` / :meth:`stop`)::

        with Simulator(SimulatorConfig(latency=0.2, jitter=0.0)) as sim:
            client = httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer k"})
            ...
            sim.stats()["tasks"]
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.state = SimState(self.config)
        #: Runway's organisation (credits, daily usage, uploads): kept across restarts.
        self.runway = RunwayBook(self.state)
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if not self.state.base_url:
            raise RuntimeError("the simulator is not running; call start() first")
        return self.state.base_url

    def start(self) -> Simulator:
        """Bind the port (``port=0`` picks a free one) and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = SimHTTPServer((self.config.host, self.config.port), self.state, self.runway)
        host, port = server.server_address[:2]
        # A wildcard bind is reachable through the loopback address; URLs must name a real host.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else str(host)
        if ":" in shown:
            shown = f"[{shown}]"
        self.state.base_url = f"http://{shown}:{port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"refstudio-simulator-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and release the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping = True
        server.shutdown()
        server.close_connections()
        server.server_close()
        self.state.close()
        self.state.base_url = ""
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stats(self) -> dict[str, Any]:
        """The same dictionary ``GET /_sim/stats`` returns."""
        return self.state.stats()

    def reset_stats(self) -> None:
        """Zero the counters (like ``POST /_sim/reset``)."""
        self.state.reset_stats()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_forever(config: SimulatorConfig | None = None) -> None:
    """Serve in the foreground until Ctrl-C, printing the base URL to point clients at."""
    sim = Simulator(config)
    sim.start()
    cfg = sim.config
    print(f"WaveSpeed + Runway simulator listening on {sim.base_url}", flush=True)
    print(
        f"  latency {cfg.latency}s ± {cfg.jitter}s · fail {cfg.fail_rate} · 429 {cfg.rate_429} · "
        f"5xx {cfg.rate_5xx} · drop {cfg.drop_rate} · key {'any' if cfg.key is None else 'fixed'}"
        + (f" · {cfg.account_concurrency} tasks at once" if cfg.account_concurrency else ""),
        flush=True,
    )
    print(f"  export WAVESPEED_BASE_URL={sim.base_url}", flush=True)
    print(f"  export RUNWAYML_BASE_URL={sim.base_url}   (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping simulator", file=sys.stderr)
    finally:
        sim.stop()

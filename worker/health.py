"""`/metrics`, `/healthz` and `/readyz` on one small HTTP server thread.

- `/healthz`: the process is alive and the main loop ticked recently (a wedged loop fails it, so the
  orchestrator restarts the pod).
- `/readyz`: the model is loaded, the consumer has joined its group (assigned or polling), and Redis
  answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthState:
    """What the health endpoints report; written by the worker's main loop, read by the server thread."""

    def __init__(self, max_tick_age_s: float, redis_ok: Callable[[], bool]) -> None:
        """Create the state.

        Args:
            max_tick_age_s: `/healthz` fails when the loop has not ticked for longer.
            redis_ok: Checks Redis (called per `/readyz` request).
        """
        self._max_tick_age_s = max_tick_age_s
        self._redis_ok = redis_ok
        self.last_tick = time.monotonic()
        self.model_loaded = False
        self.consumer_ready = False

    def tick(self) -> None:
        """Record that the main loop is alive."""
        self.last_tick = time.monotonic()

    def healthy(self) -> tuple[bool, str]:
        """Whether the loop is ticking."""
        age = time.monotonic() - self.last_tick
        return age <= self._max_tick_age_s, f"last loop tick {age:.1f}s ago"

    def ready(self) -> tuple[bool, str]:
        """Whether the worker can do its job."""
        problems = []
        if not self.model_loaded:
            problems.append("model not loaded")
        if not self.consumer_ready:
            problems.append("consumer not polling")
        if not self._redis_ok():
            problems.append("redis unreachable")
        return not problems, "; ".join(problems) or "ready"


class HealthServer:
    """Serves metrics and health on `host:port` from a daemon thread."""

    def __init__(self, host: str, port: int, state: HealthState, registry: CollectorRegistry) -> None:
        """Bind the server (port 0 picks a free port; see `port`)."""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok, detail = state.healthy()
                    self._send(200 if ok else 503, detail.encode() + b"\n", "text/plain")
                elif self.path == "/readyz":
                    ok, detail = state.ready()
                    self._send(200 if ok else 503, detail.encode() + b"\n", "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # probes every few seconds would flood the logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alocc-health", daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

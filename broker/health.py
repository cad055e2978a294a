"""Liveness and readiness of one consumer process, served with /metrics on one HTTP port.

- live (``/healthz``, ``/livez``): the main loop has called `Health.beat` within ``stall_after_s``
  (counted from construction before the first beat) and no fatal error was reported with
  `Health.fail`. A failing liveness probe restarts the container.
- ready (``/readyz``): live, at least one partition assigned and a model loaded. A consumer
  with no partition (more replicas than partitions) is alive but not ready.

Both answer 200 or 503 with a small JSON body; ``/metrics`` is the Prometheus text exposition of
the given registry. The server binds to the configured address (``DMDT_METRICS_HOST``, default
127.0.0.1: loopback only; containers set 0.0.0.0 so Prometheus and the kubelet can reach it).

The app wires it in four calls::

    health = Health()
    server = serve(health, metrics.registry, settings.metrics_host, settings.metrics_port)
    health.set_model(model.version)          # after each successful (re)load
    health.set_assigned(len(owned))          # in on_assign / on_revoke / on_lost
    health.beat()                            # once per poll-loop iteration
    ...
    server.close()

``python -m broker.health [URL]`` exits 0 when URL answers 200 (the container HEALTHCHECK).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

DEFAULT_STALL_AFTER_S = 120.0  # a poll loop silent this long is stuck: restart it


@dataclass(frozen=True)
class Status:
    """One probe's answer: ok, and the facts it was decided on (JSON-ready, no secrets)."""

    ok: bool
    detail: dict[str, Any]


class Health:
    """Thread-safe liveness/readiness state, written by the app and read by the HTTP server."""

    def __init__(
        self,
        stall_after_s: float = DEFAULT_STALL_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stall_after_s > 0:
            raise ValueError(f"stall_after_s must be positive, got {stall_after_s}")
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._beats = 0
        self._assigned = 0
        self._model: str | None = None
        self._failure: str | None = None

    def beat(self) -> None:
        """The main loop is alive (call once per poll iteration)."""
        with self._lock:
            self._last_beat = self._clock()
            self._beats += 1

    def set_assigned(self, n: int) -> None:
        """Number of input partitions this consumer owns now."""
        if n < 0:
            raise ValueError(f"partition count must be >= 0, got {n}")
        with self._lock:
            self._assigned = n

    def set_model(self, version: str | None) -> None:
        """The loaded model's version, or None when no model is loaded."""
        with self._lock:
            self._model = version or None

    def fail(self, reason: str) -> None:
        """A fatal error: liveness fails from now on (the process should also exit)."""
        with self._lock:
            self._failure = reason

    def liveness(self) -> Status:
        """Live: beating within stall_after_s and not failed."""
        with self._lock:
            silent = self._clock() - self._last_beat
            detail: dict[str, Any] = {
                "seconds_since_beat": round(silent, 3),
                "beats": self._beats,
                "stall_after_s": self.stall_after_s,
            }
            if self._failure is not None:
                detail["failure"] = self._failure
            return Status(self._failure is None and silent <= self.stall_after_s, detail)

    def readiness(self) -> Status:
        """Ready: live, with at least one assigned partition and a loaded model."""
        live = self.liveness()
        with self._lock:
            detail = {
                **live.detail,
                "live": live.ok,
                "assigned_partitions": self._assigned,
                "model": self._model,
            }
            ok = live.ok and self._assigned > 0 and self._model is not None
        return Status(ok, detail)


class _Handler(BaseHTTPRequestHandler):
    health: ClassVar[Health]
    registry: ClassVar[CollectorRegistry]
    server_version = "dmdt-broker"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.registry), head)
        elif path in ("/healthz", "/livez"):
            self._status(self.health.liveness(), head)
        elif path == "/readyz":
            self._status(self.health.readiness(), head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n", head)

    def _status(self, status: Status, head: bool) -> None:
        body = json.dumps({"ok": status.ok, **status.detail}).encode() + b"\n"
        self._send(200 if status.ok else 503, "application/json", body, head)

    def _send(self, code: int, content_type: str, body: bytes, head: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log (probes hit it every few seconds)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class MetricsAddressError(RuntimeError):
    """The metrics address cannot be bound; the message names it and the setting to change."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            text = (
                f"metrics port {where} is already in use (another dmdt-broker?): set "
                "DMDT_METRICS_PORT or --metrics-port to a free port, or 0 for any free one"
            )
        elif exc.errno == errno.EACCES:
            text = (
                f"no permission to serve metrics on {where} (ports below 1024 need "
                "privileges): set DMDT_METRICS_PORT or --metrics-port to a port above 1023"
            )
        else:
            reason = exc.strerror or type(exc).__name__
            text = (
                f"cannot serve metrics on {where} ({reason}): set DMDT_METRICS_HOST or "
                "--metrics-host to an address of this machine (default 127.0.0.1)"
            )
        super().__init__(text)  # fmt: skip
        self.host, self.port = host, port


@dataclass(frozen=True)
class HealthServer:
    """A running /metrics + /healthz + /readyz server; `port` is the bound one."""

    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(
    health: Health,
    registry: CollectorRegistry,
    host: str = "127.0.0.1",
    port: int = 9108,
) -> HealthServer:
    """Serve metrics and probes on http://host:port in a daemon thread (port 0: any free one).

    Raises MetricsAddressError (one line naming the address and the setting) when the address
    cannot be bound.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as exc:
        raise MetricsAddressError(host, port, exc) from exc
    handler = type("Handler", (_Handler,), {"health": health, "registry": registry})

    class Server(_Server):
        address_family = family

    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise MetricsAddressError(host, port, exc) from exc
    thread = threading.Thread(target=server.serve_forever, name="dmdt-health", daemon=True)
    thread.start()
    return HealthServer(host, server.server_address[1], server, thread)


def probe(url: str, timeout_s: float = 3.0) -> bool:
    """True when url answers HTTP 200 within timeout_s."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m broker.health [URL]``: 0 when the probe answers 200 (container HEALTHCHECK)."""
    args = list(sys.argv[1:] if argv is None else argv)
    port = os.environ.get("DMDT_METRICS_PORT", "9108")
    url = args[0] if args else f"http://127.0.0.1:{port}/healthz"
    ok = probe(url)
    print(f"{url}: {'ok' if ok else 'failing'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

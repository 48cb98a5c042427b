"""Run the server: where it may listen, and uvicorn around the Starlette app, in the foreground (`tandem
serve`) or in a background thread (the app, the tests).

Listening anywhere but loopback is an explicit choice that needs an API key: without one, anybody who can
reach the port could run prompts on this computer. The socket is bound here, before uvicorn starts, so "port
in use" is an error the caller can show instead of a log line in another thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import TandemError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642
SHUTDOWN_GRACE_S = 3  # open streams get this long to finish; then their tasks are cancelled (jobs too)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name that could resolve anywhere


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse a non-loopback address without an API key."""
    if not is_loopback(host) and not api_key:
        raise TandemError(
            f"refusing to listen on {host}: other machines can reach that address, and without an API key "
            "anyone who can would run prompts on this computer. Set an API key (--api-key, --api-key-file "
            "or TANDEM_API_KEY) or listen on 127.0.0.1."
        )


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise TandemError(f"cannot listen on {host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":  # there it would let another program take the port over
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno in (98, 48, 10048) else exc.strerror
        raise TandemError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(False)
    return sock


def _uvicorn(app: Starlette) -> uvicorn.Server:
    import uvicorn  # here: `tandem --help` need not load the HTTP stack

    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,  # keep the host program's logging as it is
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    return uvicorn.Server(config)


class ServerThread:
    """The server in a background thread with its own event loop; `start()` returns once it listens."""

    def __init__(self, app: Starlette, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self._sock = bind(host, port)
        bound = self._sock.getsockname()
        self.address = Address(host, int(bound[1]))
        self._server = _uvicorn(app)
        self._thread = threading.Thread(target=self._run, name="tandem-server", daemon=True)
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise TandemError(f"the server did not start ({self._error or 'timed out'})")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start(); the thread just ends
            self._error = exc


def serve_forever(app: Starlette, sock: socket.socket) -> None:
    """Serve in the calling (main) thread until Ctrl+C or SIGTERM."""
    try:
        _uvicorn(app).run(sockets=[sock])
    finally:
        sock.close()

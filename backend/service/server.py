"""Run the app with uvicorn: bind, advertise, serve, and shut down gracefully.

Ctrl-C / SIGTERM are handled by uvicorn (in the main thread); the app's lifespan shutdown then
unregisters zeroconf and stops the job worker (cancelling queued jobs, asking the running one to
stop) before the process exits. :meth:`Service.start_in_thread` serves from a background thread
for tests and benchmarks (no signal handlers there; :meth:`Service.stop` ends it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from os import PathLike
from typing import Any

import uvicorn

from shared import api, tempfolders

from .app import EngineLike, create_app
from .auth import check_bind
from .discovery import Advertiser, txt_records
from .errors import ServiceError
from .jobs import JobQueue
from .policy import LibraryRoots, home_library_roots

log = logging.getLogger(__name__)


class Service:
    """The backend service: app + job queue + zeroconf advertisement on one bound socket.

    ``port=0`` picks a free port (see :attr:`port` after construction). Raises
    :class:`backend.service.auth.AuthError` for a non-loopback host without a token, and
    :class:`ServiceError` when the address cannot be bound.

    ``library_roots``: the folders ``POST /index`` may read (``asset2vec serve --library-root``); ``None``: the
    library folders the served home's own models were built from (none for a single run).
    """

    def __init__(
        self,
        engine: EngineLike,
        host: str = "127.0.0.1",
        port: int = api.DEFAULT_PORT,
        token: str | None = None,
        advertise: bool = True,
        log_level: str = "warning",
        max_upload_bytes: int = api.MAX_UPLOAD_BYTES,
        library_roots: Iterable[str | PathLike[str]] | None = None,
    ) -> None:
        check_bind(host, token)  # before anything is bound or advertised
        self.engine, self.host, self.token = engine, host, token
        self.queue = JobQueue(max_queued=16)  # each waiting upload holds up to MAX_UPLOAD_BYTES in memory
        self.socket = _bind(host, port)
        self.port: int = self.socket.getsockname()[1]
        self.advertiser: Advertiser | None = None
        if advertise:
            self.advertiser = Advertiser(host, self.port, txt_records(engine.info(), token is not None))
        self.app = create_app(
            engine,
            token=token,
            queue=self.queue,
            max_upload_bytes=max_upload_bytes,
            on_startup=self._on_startup,
            on_shutdown=self._on_shutdown,
            host=host,
            library_roots=LibraryRoots(home_library_roots(getattr(engine, "home", None))
                                       if library_roots is None else library_roots),
        )
        config = uvicorn.Config(
            self.app, log_level=log_level, timeout_graceful_shutdown=10, lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL clients use (``http://host:port``; a wildcard host is shown as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _on_startup(self) -> None:
        # Temporary folders of killed backends and bulk runs (only those whose owner process is dead).
        for stale in tempfolders.remove_stale():
            log.info("removed %s, left by a process that ended without cleaning up", stale.name)
        if self.advertiser is not None:
            self.advertiser.start()

    def _on_shutdown(self) -> None:
        if self.advertiser is not None:
            self.advertiser.close()
        self.queue.shutdown()  # the engine belongs to the caller, who closes it after run()

    def run(self) -> None:
        """Serve until Ctrl-C / SIGTERM (call from the main thread), then clean up."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start_in_thread(self, timeout: float = 20.0) -> Service:
        """Serve from a daemon thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.run, name="asset2vec-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceError("the backend's HTTP server did not start; see the log above", 500)
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the server to exit gracefully and wait for it (thread mode)."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Service:
        return self.start_in_thread()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = " (is another backend already running? pick another --port)" if port else ""
        raise ServiceError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}", 500) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock

"""Fixtures for the service tests: a real Engine on a tiny real run, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from tests.backend.service import service_support as support


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    run = support.fresh_run_copy(tmp_path_factory.mktemp("served") / "run")
    eng = Engine.open(run, invert_steps=support.INVERT_STEPS)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def service(engine: Engine) -> Iterator[Service]:
    """The backend really served over HTTP on 127.0.0.1 (free port, no zeroconf) from a thread."""
    svc = Service(engine, host="127.0.0.1", port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()


@pytest.fixture
def http(service: Service) -> Iterator[httpx.Client]:
    """A raw HTTP client that follows the request policy (sends the client header, like the add-on)."""
    with httpx.Client(base_url=service.url, timeout=60.0, headers=support.CLIENT_HEADERS) as client:
        yield client

"""Fixtures for the service tests: a real Engine on a tiny real run, served on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # service_support.py, under any pytest import mode

import service_support as support  # noqa: E402

from backend.service.engine import Engine  # noqa: E402
from backend.service.server import Service  # noqa: E402


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
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        yield client

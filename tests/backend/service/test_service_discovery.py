"""zeroconf: a live backend registers on loopback and the add-on's discover() finds it (real mDNS)."""

from __future__ import annotations

import time

import httpx
import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from shared import api
from shared.client import discover

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


def _find(url: str, timeout: float) -> list[tuple[str, str, dict[str, str]]]:
    return [s for s in discover(timeout=timeout, interfaces=["127.0.0.1"]) if s[1] == url]


def test_live_backend_is_discovered_on_loopback_and_leaves_on_shutdown(engine: Engine) -> None:
    svc = Service(engine, host="127.0.0.1", port=0, advertise=True).start_in_thread()
    try:
        assert svc.advertiser is not None and svc.advertiser.wait(15), "zeroconf registration did not finish"
        found = _find(svc.url, timeout=2.0)
        assert len(found) == 1, discover(timeout=1.0, interfaces=["127.0.0.1"])
        name, url, txt = found[0]
        assert f"port {svc.port}" in name
        assert txt["api"] == str(api.API_VERSION) and txt["path"] == api.API_PREFIX
        assert txt["model"] == engine.model_id and txt["device"] == "cpu" and txt["token"] == "0"
        # The advertised URL really serves the API.
        assert httpx.get(f"{url}{api.API_PREFIX}/info").json()["model_id"] == engine.model_id
    finally:
        svc.stop()
    # Unregistered on shutdown (goodbye packets): a fresh browse no longer lists it.
    deadline = time.monotonic() + 10
    while _find(svc.url, timeout=1.0):
        assert time.monotonic() < deadline, "the backend was still advertised after shutdown"

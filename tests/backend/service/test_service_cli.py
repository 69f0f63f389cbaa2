"""``asset2vec serve`` as a real process: serves, advertises, and stops gracefully on SIGINT / SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared import api
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run); starts the backend in a subprocess


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_and_stop_gracefully(tmp_path: Path, sig: signal.Signals) -> None:
    run = support.fresh_run_copy(tmp_path / "run")
    port = support.free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ASSET2VEC_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--run", str(run), "--port", str(port), "--no-zeroconf",
         "--log-level", "warning", "--library-root", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}{api.API_PREFIX}/info"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                info = httpx.get(url, timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the backend did not start"
                time.sleep(0.2)
        assert info["api_version"] == api.API_VERSION and info["preset"] == "cpu-small"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "serving at http://127.0.0.1" in err
    assert f"libraries may be read from: {tmp_path.resolve()}" in err
    assert "Traceback" not in err
    if sig == signal.SIGINT:
        assert proc.returncode == 0 and "backend stopped" in err
    else:  # uvicorn shuts down, then re-raises SIGTERM so the exit status still says "terminated"
        assert proc.returncode in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)
    # The catalogue was imported on start and closed cleanly: it opens and is consistent.
    from backend.library.catalogue import Catalogue

    with Catalogue(run / "catalogue.sqlite") as cat:
        assert cat.integrity_ok() and cat.count("codes") == len(support.TRAIN_ITEMS)

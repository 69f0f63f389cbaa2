"""Shared set-up for the add-on tests that talk to a live backend: a real Engine on the tiny trained run
of ``tests/backend/service/service_support.py``, served over HTTP on 127.0.0.1 from a thread."""

from __future__ import annotations

import time
from typing import Any

from blender_addon import embed_job, preferences
from tests.backend.service import service_support as support

TOKEN = "addon-test-token-0123456789abcdef"


def configure(url: str, token: str = "") -> Any:
    """Point the add-on's preferences at ``url`` with small, fast captures (32 px, 4 samples)."""
    prefs = preferences.get()
    assert prefs is not None, "the add-on's preferences are not registered"
    prefs.backend_url, prefs.token = url, token
    prefs.capture_size, prefs.capture_samples = 32, 4
    return prefs


def run_embed(bpy: Any, timeout: float = 120.0, **options: Any) -> embed_job.EmbedJob:
    """Press Embed (the real operator) and drive its timer steps until the job ends."""
    assert bpy.ops.asset2vec.embed(**options) == {"FINISHED"}
    t0 = time.monotonic()
    job = embed_job.pump(timeout=timeout)
    assert job is not None
    job.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return job


__all__ = ["TOKEN", "configure", "run_embed", "support"]

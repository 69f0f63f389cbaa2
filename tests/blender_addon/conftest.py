"""Fixtures shared by the add-on tests: the registered add-on, and a live backend (a real Engine on the tiny
trained run of ``tests/backend/service/service_support.py``, served over HTTP on 127.0.0.1 from a thread).

``engine`` and ``backend`` are module-scoped: each test module gets its own catalogue. A module that needs
another kind of backend defines its own fixture of the same name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from tests.blender_addon.addon_support import support


@pytest.fixture
def addon(blender: Any) -> Iterator[Any]:
    """``bpy`` with the add-on registered (and unregistered after the test)."""
    import blender_addon

    blender_addon.register()
    yield blender
    blender_addon.unregister()


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A fresh copy of the tiny trained run, served by a real Engine (its own catalogue per test module)."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    eng = Engine.open(support.fresh_run_copy(folder / "run"), invert_steps=support.INVERT_STEPS)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def backend(engine: Engine) -> Iterator[Service]:
    """The engine served over HTTP on 127.0.0.1 (free port, no zeroconf)."""
    svc = Service(engine, port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()

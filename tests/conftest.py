"""Project-wide fixtures: a clean headless Blender per test, the sample library built once, and a live backend
(``engine`` + ``backend``: the tiny trained run served on loopback, used by the client and add-on tests).

Blender's user folders point at a temporary directory before ``bpy`` is imported anywhere, so tests
never read or write the user's Blender config, scripts or extensions.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_BLENDER_HOME = tempfile.mkdtemp(prefix="asset2vec-blender-user-")
atexit.register(shutil.rmtree, _BLENDER_HOME, ignore_errors=True)
for _var, _sub in (("BLENDER_USER_CONFIG", "config"), ("BLENDER_USER_SCRIPTS", "scripts"),
                   ("BLENDER_USER_EXTENSIONS", "extensions"), ("BLENDER_USER_DATAFILES", "datafiles")):
    os.environ[_var] = os.path.join(_BLENDER_HOME, _sub)  # always: never the developer's own folders
# The backend's library home: never the developer's ~/.asset2vec.
os.environ["ASSET2VEC_HOME"] = os.path.join(_BLENDER_HOME, "asset2vec-home")
# Test clients talk to servers on this machine; a developer's proxy settings must not intercept them.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = "127.0.0.1,localhost"


@pytest.fixture
def blender() -> Iterator[Any]:
    """``bpy`` reset to an empty factory session (one empty scene, no objects) for this test."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The procedural sample library (seed 0) built once per session: .blend files + ground_truth.json."""
    import bpy

    from blender_addon.headless.sample_library import build_sample_library

    out = tmp_path_factory.mktemp("sample_library")
    build_sample_library(out, seed=0)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return out


@pytest.fixture(scope="session")
def sample_truth(sample_library: Path) -> dict[str, Any]:
    """The sample library's ground_truth.json: {"assets": [{name, blend, family, shape, texture, ...}], ...}."""
    import json

    return json.loads((sample_library / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh copy of the tiny trained run (tests/backend/service/service_support.py), served by a real
    ``Engine`` with its own catalogue per test module. A folder that needs another engine overrides it."""
    from backend.service.engine import Engine
    from tests.backend.service import service_support as support

    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    # The tiny run has 8 tagged assets: too few for any tag to reach the default 0.9 precision out of fold, so the
    # tests that check what Embed writes serve it with a target its tags can reach (issue 17's calibration).
    eng = Engine.open(support.fresh_run_copy(folder / "run"), invert_steps=support.INVERT_STEPS,
                      tag_target=support.TAG_TARGET)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def backend(engine: Any) -> Iterator[Any]:
    """The ``engine`` served over HTTP on 127.0.0.1 (a ``Service`` from a thread: free port, no zeroconf)."""
    from backend.service.server import Service

    svc = Service(engine, port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()


#: Fixtures that train a model or serve the tiny trained run: a test using one is ``slow`` whatever its module says
#: (``python build.py test --quick`` runs ``-m "not slow"``). Modules that render with Cycles, train or start
#: Blender subprocesses say so themselves with ``pytestmark = pytest.mark.slow``.
SLOW_FIXTURES = frozenset({"engine", "service", "backend", "http", "trained"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

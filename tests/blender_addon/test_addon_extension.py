"""The built extension zip, installed into real bpy: its preferences live under the extension's module name
and its Embed runs against a live backend (the installed modules, not the source folder)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import build
from backend.service.engine import Engine
from backend.service.server import Service
from tests.blender_addon.addon_support import support

pytestmark = pytest.mark.slow  # renders with Cycles; serves the tiny trained run

ROOT = Path(__file__).resolve().parents[2]

MODULE = "bl_ext.user_default.asset2vec"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    eng = Engine.open(support.fresh_run_copy(tmp_path_factory.mktemp("addon-ext") / "run"),
                      invert_steps=support.INVERT_STEPS)
    svc = Service(eng, port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()
    eng.close()


def test_installed_extension_preferences_and_embed(blender, backend, tmp_path):
    bpy = blender
    zip_path = build.build_extension(tmp_path / "dist", platforms=["linux-x64"])
    assert bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default") == {"FINISHED"}
    bpy.utils.refresh_script_paths()
    bpy.ops.preferences.addon_enable(module=MODULE)
    try:
        prefs = bpy.context.preferences.addons[MODULE].preferences
        assert sys.modules[f"{MODULE}.preferences"].ADDON_ID == MODULE
        prefs.backend_url, prefs.capture_size, prefs.capture_samples = backend.url, 32, 4
        bpy.ops.mesh.primitive_cube_add(size=0.5)
        cube = bpy.context.active_object
        assert bpy.ops.asset2vec.embed() == {"FINISHED"}
        job = sys.modules[f"{MODULE}.embed_job"].pump(timeout=120)
        assert job.state == "done", job.message
        data = cube["asset2vec"].to_dict()
        assert len(data["code_shape"]) == 32 and data["model_id"]
        assert "custom property 'asset2vec' only" in job.message  # the cube is not marked as an asset
    finally:
        bpy.ops.preferences.addon_disable(module=MODULE)
    assert MODULE not in bpy.context.preferences.addons

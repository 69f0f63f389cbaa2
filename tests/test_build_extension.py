"""The built extension zip installs into the real (PyPI) Blender and its operators run."""

from __future__ import annotations

import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import build  # noqa: E402  (build.py is standard-library only)


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.build_extension(tmp_path_factory.mktemp("dist"), platforms=["linux-x64"])


def test_zip_has_manifest_protocol_and_wheels(extension_zip: Path) -> None:
    with zipfile.ZipFile(extension_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert manifest["id"] == "asset2vec" and manifest["blender_version_min"] >= "4.2.0"
    assert manifest["permissions"]["network"] and manifest["permissions"]["files"]
    assert {"__init__.py", "capture.py", "protocol.py", "shared/rig.py", "shared/bundle.py"} <= names
    wheels = manifest["wheels"]
    assert any("zeroconf" in w for w in wheels) and any("ifaddr" in w for w in wheels)
    assert all(w.removeprefix("./") in names for w in wheels)
    assert not any("torch" in n for n in names), "the add-on must not ship or need torch"


def test_zip_installs_and_capture_operator_runs(blender, extension_zip: Path, tmp_path: Path) -> None:
    bpy = blender
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default")
    assert result == {"FINISHED"}
    bpy.utils.refresh_script_paths()
    module = "bl_ext.user_default.asset2vec"
    bpy.ops.preferences.addon_enable(module=module)
    try:
        assert module in bpy.context.preferences.addons
        # The vendored protocol is the extension's own copy, not the repository's shared/.
        assert sys.modules[f"{module}.protocol"].rig.__name__ == f"{module}.shared.rig"
        bpy.ops.mesh.primitive_cube_add(size=1.0)
        settings = bpy.context.scene.asset2vec
        settings.capture_size, settings.capture_samples, settings.output_dir = 32, 2, str(tmp_path)
        assert bpy.ops.asset2vec.capture() == {"FINISHED"}
        assert len(list(tmp_path.rglob("views/*.png"))) == 18
    finally:
        bpy.ops.preferences.addon_disable(module=module)

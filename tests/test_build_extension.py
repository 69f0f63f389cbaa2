"""The built extension zip installs into the real (PyPI) Blender and its operators run."""

from __future__ import annotations

import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.build_extension(tmp_path_factory.mktemp("dist"), platforms=["linux-x64"])


@pytest.mark.slow  # builds the extension zip
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


@pytest.mark.slow  # builds the extension zip, installs it and captures with Cycles
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


def test_extension_command_needs_no_full_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    def no_venv() -> None:
        raise AssertionError("`build.py extension` must not create or check the full venv")

    built: list[tuple[Path, object]] = []
    monkeypatch.setattr(build, "ensure_venv", no_venv)
    monkeypatch.setattr(build, "build_extension", lambda out, platforms=None: built.append((out, platforms)) or out)
    build.cmd_extension(argparse.Namespace(out=str(tmp_path), platform=[]))
    assert built == [(tmp_path.resolve(), None)]


def test_stale_wheels_are_cleared_before_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the wheels pip downloads in this build ship (the download itself is replaced by a fake here).
    root = tmp_path / "repo"
    for folder in ("blender_addon", "shared"):
        (root / folder).mkdir(parents=True)
    (root / "blender_addon" / "blender_manifest.toml").write_text((ROOT / "blender_addon" / "blender_manifest.toml")
                                                                  .read_text())
    stale = root / "build" / "wheels" / "linux-x64" / "zeroconf-0.1-py3-none-any.whl"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    def fake_run(cmd: list[str], **kw: object) -> None:
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "zeroconf-9.9-py3-none-any.whl").write_bytes(b"new")

    monkeypatch.setattr(build, "ROOT", root)
    monkeypatch.setattr(build, "run", fake_run)
    target = build.build_extension(tmp_path / "dist", platforms=["linux-x64"])
    names = zipfile.ZipFile(target).namelist()
    assert "wheels/zeroconf-9.9-py3-none-any.whl" in names
    assert "wheels/zeroconf-0.1-py3-none-any.whl" not in names

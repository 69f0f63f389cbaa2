"""The built extension zip installs into the real (PyPI) Blender and its operators run."""

from __future__ import annotations

import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

import build

ROOT = Path(__file__).resolve().parents[1]


#: Each platform Blender ships on: (platform tag prefix, architecture) a zeroconf wheel for it must carry.
PLATFORM_TAGS = {
    "linux-x64": ("manylinux", "x86_64"), "linux-arm64": ("manylinux", "aarch64"),
    "windows-x64": ("win", "amd64"), "windows-arm64": ("win", "arm64"),
    "macos-arm64": ("macosx", "arm64"), "macos-x64": ("macosx", "x86_64"),
}


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.build_extension(tmp_path_factory.mktemp("dist"))  # every platform's wheels, from PyPI


def _platform_tags(wheel: str) -> set[str]:
    """The platform tags of a wheel file name (``name-version-py-abi-plat1.plat2.whl``)."""
    return set(wheel.removesuffix(".whl").split("-")[-1].split("."))


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
    # Each wheel once (Blender warns "Duplicate name" otherwise), in the list and in the zip.
    assert len(wheels) == len(set(wheels)), wheels
    with zipfile.ZipFile(extension_zip) as zf:
        in_zip = [n for n in zf.namelist() if n.startswith("wheels/")]
    assert len(in_zip) == len(set(in_zip)) == len(wheels)
    assert sum("/ifaddr-" in w for w in wheels) == 1, wheels
    # zeroconf for every platform Blender ships on (a pure wheel would cover them all).
    assert set(PLATFORM_TAGS) == set(build.WHEEL_PLATFORMS)
    zeroconf = [_platform_tags(w) for w in wheels if "/zeroconf-" in w]
    for plat, (prefix, arch) in PLATFORM_TAGS.items():
        assert any("any" in tags or any(t.startswith(prefix) and t.endswith(arch) for t in tags)
                   for tags in zeroconf), f"no zeroconf wheel for {plat}: {wheels}"


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
        assert sys.modules[f"{module}.capture_job"].pump().state == "done"  # the views, one per timer step
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


def test_a_wheel_fetched_for_several_platforms_ships_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip downloads the pure ifaddr wheel once per platform: the zip and its manifest must list it once.
    root = tmp_path / "repo"
    for folder in ("blender_addon", "shared"):
        (root / folder).mkdir(parents=True)
    (root / "blender_addon" / "blender_manifest.toml").write_text((ROOT / "blender_addon" / "blender_manifest.toml")
                                                                  .read_text())

    def fake_run(cmd: list[str], **kw: object) -> None:
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "ifaddr-0.2.0-py3-none-any.whl").write_bytes(b"pure")
        (dest / f"zeroconf-1.0-cp311-cp311-{cmd[cmd.index('--platform') + 1]}.whl").write_bytes(b"binary")

    monkeypatch.setattr(build, "ROOT", root)
    monkeypatch.setattr(build, "run", fake_run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zipfile's "Duplicate name" warning fails the test
        target = build.build_extension(tmp_path / "dist")
    with zipfile.ZipFile(target) as zf:
        wheels = tomllib.loads(zf.read("blender_manifest.toml").decode())["wheels"]
        in_zip = [n for n in zf.namelist() if n.startswith("wheels/")]
    assert wheels.count("./wheels/ifaddr-0.2.0-py3-none-any.whl") == 1
    assert len(wheels) == len(set(wheels)) == len(in_zip) == len(set(in_zip)) == 1 + len(build.WHEEL_PLATFORMS)

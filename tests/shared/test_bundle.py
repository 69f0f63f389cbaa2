"""The view bundle: write/read round trip, archives, and a clear message for every kind of breakage."""

from __future__ import annotations

import io
import json
import math

import pytest
from PIL import Image

from shared import bundle, rig

SIZE = 32


def _png(size: int = SIZE, mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), (200, 10, 10, 255)[: len(mode)]).save(buf, format="PNG")
    return buf.getvalue()


def _make(folder, size: int = SIZE):
    (folder / bundle.VIEWS_DIR).mkdir(parents=True)
    for i in range(rig.NUM_VIEWS):
        (folder / bundle.VIEWS_DIR / f"{i:02d}.png").write_bytes(_png(size))
    info = bundle.AssetInfo(name="Chair", source_blend="/lib/chairs.blend", asset_name="Chair", content_hash="ab" * 32,
                            family="chairs", parameters={"legs": 4, "height": 0.9}, tags=["chair", "armrests"],
                            category="Furniture/Chairs", size=(0.5, 0.6, 0.9), center=(1.0, 2.0, 0.45), radius=0.61)
    bundle.write_transforms(folder, size, info)
    return info


def _edit(folder, fn):
    path = folder / bundle.TRANSFORMS
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def test_round_trip_folder_and_archive(tmp_path):
    info = _make(tmp_path / "b")
    b = bundle.read_bundle(tmp_path / "b", expected_size=SIZE)
    assert b.asset == info
    assert b.image_size == SIZE and len(b.frames) == 18
    flat = [v for row in b.frames[5].transform_matrix for v in row]
    assert flat == pytest.approx([v for row in rig.views()[5].camera_to_world() for v in row])
    assert b.image_bytes(0) == _png()
    meta = json.loads((tmp_path / "b" / bundle.TRANSFORMS).read_text())
    # NeRF tools' keys are there.
    assert meta["camera_angle_x"] == pytest.approx(math.radians(rig.FOV_DEG))
    assert meta["frames"][0]["file_path"] == "views/00.png" and len(meta["frames"][0]["transform_matrix"]) == 4
    zpath = bundle.write_archive(b, tmp_path / "b.zip")
    from_zip = bundle.read_bundle(zpath)
    assert from_zip.asset == info and from_zip.image_bytes(17) == _png()
    parsed, images = bundle.parse_archive(zpath.read_bytes(), expected_size=SIZE)
    assert parsed.asset == info and len(images) == 18
    # The in-memory upload (what the add-on sends) is the same archive, from the Bundle or from its folder.
    assert bundle.archive_bytes(b) == bundle.archive_bytes(tmp_path / "b") == zpath.read_bytes()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "views" / "07.png").unlink(), "frame 7 image views/07.png is missing"),
        (lambda f: (f / "views" / "03.png").write_bytes(_png(16)), "frame 3 image views/03.png is 16x16, expected 32x32"),
        (lambda f: (f / "views" / "04.png").write_bytes(_png(mode="RGB")), "must be 8-bit RGBA"),
        (lambda f: (f / "views" / "05.png").write_bytes(b"GIF89a" + b"\0" * 40), "frame 5 image views/05.png is not a PNG"),
        (lambda f: _edit(f, lambda m: m["frames"][2].update(transform_matrix=[[1, 0, 0, 0]] * 4)), "last row"),
        (lambda f: _edit(f, lambda m: m["frames"][2].update(transform_matrix=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                               [0, 0, 0, 1]])), "not orthonormal"),
        (lambda f: _edit(f, lambda m: m["frames"][2].update(transform_matrix=[[-1, 0, 0, 0], [0, 1, 0, 0],
                                                                               [0, 0, 1, 0], [0, 0, 0, 1]])), "reflection"),
        (lambda f: _edit(f, lambda m: m["frames"][1].update(transform_matrix="nope")), "4x4 array of finite numbers"),
        (lambda f: _edit(f, lambda m: m["frames"].pop()), "17 frames"),
        (lambda f: _edit(f, lambda m: m.update(bundle_version=99)), "bundle_version 99 is not supported"),
        (lambda f: _edit(f, lambda m: m.update(w=33)), "must be square"),
        (lambda f: _edit(f, lambda m: m["rig"].update(name="other")), "captured with rig 'other'"),
        (lambda f: _edit(f, lambda m: m["asset"].update(radius=-1)), "radius must be a positive number"),
        (lambda f: _edit(f, lambda m: m["asset"].update(name="")), "non-empty 'name'"),
        (lambda f: _edit(f, lambda m: m["frames"][0].update(file_path="../x.png")), "must be relative"),
        (lambda f: _edit(f, lambda m: m.update(rig=[1])), "captured with rig None"),
        (lambda f: _edit(f, lambda m: m["frames"][3].update(ring="x")), "frame 3 ring/elevation_deg/azimuth_deg"),
        (lambda f: _edit(f, lambda m: m["frames"][3].update(file_path="views/02.png")), "frame 3 reuses image"),
        (lambda f: _edit(f, lambda m: m["asset"].update(tags="chair")), "asset.tags must be a list of strings"),
        (lambda f: _edit(f, lambda m: m["asset"].update(parameters=[1])), "asset.parameters must be an object"),
        (lambda f: _edit(f, lambda m: m["asset"].update(name=7)), "asset.name must be a string"),
        (lambda f: _edit(f, lambda m: m["asset"].update(radius=True)), "radius must be a positive number"),
        (lambda f: (f / bundle.TRANSFORMS).write_text("{oops"), "not valid JSON"),
        (lambda f: (f / bundle.TRANSFORMS).unlink(), "has no transforms.json"),
    ],
)
def test_broken_bundles_are_refused_with_a_message(tmp_path, breakage, message):
    folder = tmp_path / "b"
    _make(folder)
    breakage(folder)
    with pytest.raises(bundle.BundleError) as info:
        bundle.read_bundle(folder)
    assert message in str(info.value)


def test_size_and_container_checks(tmp_path):
    _make(tmp_path / "b")
    with pytest.raises(bundle.BundleError, match="views are 32 px but 64 px are required"):
        bundle.read_bundle(tmp_path / "b", expected_size=64)
    with pytest.raises(bundle.BundleError, match="no such bundle"):
        bundle.read_bundle(tmp_path / "missing")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(bundle.BundleError, match="not a bundle folder or a readable .zip"):
        bundle.read_bundle(tmp_path / "junk.zip")
    with pytest.raises(bundle.BundleError, match="not a .zip archive"):
        bundle.parse_archive(b"nope")
    with pytest.raises(bundle.BundleError, match="outside"):
        _make(tmp_path / "tiny", size=8)
        bundle.read_bundle(tmp_path / "tiny")


def _zip_of(folder, replace: dict[str, bytes] | None = None, compression: int = 8) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            zf.writestr(rel, (replace or {}).get(rel, path.read_bytes()))
    return buf.getvalue()


def test_zip_bomb_is_refused_before_decompressing(tmp_path):
    _make(tmp_path / "b")
    # A PNG padded with 50 MB of zeros: a tiny upload that would decompress to far more than a 32 px view.
    bomb = _png() + b"\0" * 50_000_000
    data = _zip_of(tmp_path / "b", {"views/06.png": bomb})
    assert len(data) < 1_000_000
    with pytest.raises(bundle.BundleError, match="views/06.png is 50.* bytes uncompressed"):
        bundle.parse_archive(data)


def test_damaged_archive_member_is_a_bundle_error(tmp_path):
    _make(tmp_path / "b")
    data = bytearray(_zip_of(tmp_path / "b", compression=0))
    png = _png()
    at = data.find(png, data.find(b"views/09.png"))
    data[at + len(png) // 2] ^= 0xFF  # corrupt the stored bytes: the CRC check fails on read
    with pytest.raises(bundle.BundleError, match="cannot be read from the archive"):
        bundle.parse_archive(bytes(data))

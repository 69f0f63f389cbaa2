"""Test support for bulk-tag: a generated library folder with good and bad files, and file checks.

Every good .blend has one or two marked box assets with artist tags; the bad ones are a corrupt
file (random bytes), a file with a valid header and garbage after it, a truncated one, a file from a
"newer" Blender and a read-only file (chmod 0o444; detected by its permission bits since tests run as root).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.bulk.driver import BulkOptions
from backend.service.engine import Engine
from backend.service.server import Service
from shared import metadata as M
from tests.blender_addon.addon_support import support
from tests.blender_addon.blender_helpers import box

ARTIST_TAGS = ["mine", "crate"]  # "crate" is also a tag the tiny run predicts: it must never be duplicated
BAD = ("corrupt.blend", "garbage_after_header.blend", "truncated.blend", "newer_version.blend")
READ_ONLY = "read_only.blend"
#: Small, fast captures (32 px, 2 samples) and every predicted tag added (threshold 0), so tags really get written.
FAST = {"size": 32, "samples": 2, "threshold": 0.0, "progress": False}


def live_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A live backend on loopback (for a module-scoped fixture): the tiny trained run, 4 inversion steps per
    asset (speed, not quality)."""
    engine = Engine.open(support.fresh_run_copy(tmp_path_factory.mktemp("bulk") / "run"), invert_steps=4)
    svc = Service(engine, port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()
    engine.close()


def bulk_options(backend: Service, **kw: Any) -> BulkOptions:
    """Options for a fast in-process run against ``backend``."""
    return BulkOptions(url=backend.url, model_id=backend.engine.info().model_id, **{**FAST, **kw})


def make_library(bpy: Any, root: Path, n_good: int, *, bad: bool = True, obj: bool = False) -> dict[str, list[str]]:
    """Write ``n_good`` good .blend files (every third with two assets) plus the bad ones; returns
    ``{file name: [asset names]}`` for the good files (the read-only one included)."""
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    good: dict[str, list[str]] = {}
    names = [f"sub/prop_{i:02d}.blend" if i % 5 == 4 else f"prop_{i:02d}.blend" for i in range(n_good)]
    if bad:
        names.append(READ_ONLY)
    for i, name in enumerate(names):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        assets = []
        for k in range(2 if i % 3 == 0 else 1):
            size = (0.3 + rng.random(), 0.3 + rng.random(), 0.3 + rng.random())
            ob = box(f"Box{i}_{k}", size=size, location=(3.0 * k, 0, 0), color=(rng.random(), rng.random(), 0.2))
            ob.asset_mark()
            for t in ARTIST_TAGS:
                ob.asset_data.tags.new(t)
            ob.asset_data.description = f"artist's box {i}.{k}"
            assets.append(ob.name)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=i == 1)  # one zstd-compressed file
        good[name] = assets
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if bad:
        (root / "corrupt.blend").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
        (root / "garbage_after_header.blend").write_bytes(b"BLENDER17-01v0500" + bytes(rng.randrange(256)
                                                                                       for _ in range(4096)))
        whole = (root / names[0]).read_bytes()
        (root / "truncated.blend").write_bytes(whole[: len(whole) * 6 // 10])
        (root / "newer_version.blend").write_bytes(b"BLENDER17-01v0900" + bytes(64))
        os.chmod(root / READ_ONLY, 0o444)
    if obj:
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / "cube.obj").write_text(_CUBE_OBJ)
    return good


_CUBE_OBJ = "\n".join(
    [f"v {x} {y} {z}" for x in (-50, 50) for y in (0, 100) for z in (-50, 50)]
    + ["f 1 3 4 2", "f 5 6 8 7", "f 1 2 6 5", "f 3 7 8 4", "f 1 5 7 3", "f 2 4 8 6", ""])


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except our state folder."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and ".asset2vec" not in p.parts}


def read_assets(bpy: Any, path: Path) -> dict[str, dict[str, Any]]:
    """Open ``path`` and return ``{asset name: {"tags": [...], "meta": {...}, "description"}}`` of marked objects."""
    from blender_addon import writeback

    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    out = {}
    for ob in bpy.data.objects:
        if ob.asset_data is not None:
            out[ob.name] = {"tags": [t.name for t in ob.asset_data.tags], "meta": writeback.read_metadata(ob),
                            "description": ob.asset_data.description}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return out


def check_updated(asset: dict[str, Any]) -> None:
    """An asset fully written by bulk-tag: artist tags intact, no duplicates, added tags recorded."""
    tags = asset["tags"]
    assert len(tags) == len(set(tags)), f"duplicated tags: {tags}"
    assert tags[: len(ARTIST_TAGS)] == ARTIST_TAGS, f"artist tags changed: {tags}"
    meta = asset["meta"]
    assert meta.get(M.CONTENT_HASH) and len(meta[M.CODE_SHAPE]) == 32 and len(meta[M.CODE_TEXTURE]) == 32
    assert set(meta[M.ADDED_TAGS]) == set(tags) - set(ARTIST_TAGS)
    assert not set(meta[M.ADDED_TAGS]) & set(ARTIST_TAGS)
    assert asset["description"].startswith("artist's box")


def child_pids(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc): a run's Blender workers."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

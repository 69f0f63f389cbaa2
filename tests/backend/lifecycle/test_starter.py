"""The starter model that ships with the package: built by its recipe, loadable, and it embeds a new asset.

``python build.py test`` builds it (``asset2vec starter-model``) before the tests run, so a missing
model is a failure with the message saying how to build it, never a skip. No test writes into the
starter folder: the catalogue of the embedding test lives in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from backend.cli import main as cli_main
from backend.library.tags import TagModel
from backend.lifecycle.starter import (
    MANIFEST_FILE,
    StarterError,
    load_recipe,
    recipe_digest,
    starter_manifest,
    starter_run_dir,
)
from backend.training.run import load_run

ROOT = Path(__file__).resolve().parents[3]
FAMILY_TAGS = {"chair", "table", "sofa", "lamp"}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{file name: (size, mtime_ns)}`` of a folder: proves nothing was written into it."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_starter_model_loads_and_matches_its_recipe() -> None:
    run_dir = starter_run_dir()  # fails with "build it with `python build.py test` ..." when missing
    manifest, recipe = starter_manifest(), load_recipe()
    assert manifest["recipe"] == recipe and manifest["recipe_digest"] == recipe_digest(recipe)
    assert manifest["generic"] is True
    assert json.loads((run_dir / "MODEL.json").read_text())["generic"] is True

    run = load_run(run_dir)
    assert run.model_id == manifest["model_id"] and run.preset == recipe["train"]["preset"]
    assert manifest["steps"] == recipe["train"]["steps"] == run.metrics.get("step", manifest["steps"])
    assert len(run.names) == manifest["data"]["assets"] >= 72  # the whole sample library
    # The recorded data digest is the one of the assets the checkpoint was really trained on.
    lines = sorted(f"{a.name}\t{a.content_hash}\n" for a in run.assets)
    assert hashlib.sha256("".join(lines).encode()).hexdigest() == manifest["data"]["digest"]
    assert run.heldout_psnr > 20.0 and abs(run.heldout_psnr - manifest["heldout_psnr"]) < 1e-2
    assert manifest["command"].startswith("asset2vec starter-model")
    assert any(c.startswith("asset2vec train ") and f"--steps {recipe['train']['steps']}" in c
               for c in manifest["commands"])

    tags = TagModel.load(run_dir / "tags.joblib", expect_model=run.model_id)  # the tag model of this decoder
    assert FAMILY_TAGS <= set(tags.classifiers) and set(manifest["tags"]) == set(tags.classifiers)
    assert not list(run_dir.glob("catalogue.sqlite*")), "the build's catalogue must not ship"
    if (run_dir / "appearance.npz").is_file():  # issue 15: tags learn on the descriptor where the features ship
        assert tags.descriptor is not None and {tags.source(t) for t in tags.classifiers} <= {"descriptor", "codes"}


def test_build_py_computes_the_same_recipe_digest() -> None:
    import build  # standard library only

    assert build.starter_recipe_digest() == recipe_digest(load_recipe())


def test_missing_or_stale_starter_model_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(StarterError, match=r"python build.py test.*asset2vec starter-model"):
        starter_run_dir(tmp_path / "nothing")
    stale = tmp_path / "stale"
    shutil.copytree(starter_run_dir(), stale)
    manifest = json.loads((stale / MANIFEST_FILE).read_text())
    (stale / MANIFEST_FILE).write_text(json.dumps({**manifest, "recipe_digest": "0" * 64}))
    with pytest.raises(StarterError, match="built from another recipe.*asset2vec starter-model"):
        starter_run_dir(stale)
    (stale / MANIFEST_FILE).write_text(json.dumps(manifest))
    (stale / "tags.joblib").unlink()
    with pytest.raises(StarterError, match="incomplete.*tags.joblib"):
        starter_run_dir(stale)


def test_starter_model_command_skips_when_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = starter_run_dir()
    before = _snapshot(run_dir)
    assert cli_main(["starter-model"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert _snapshot(run_dir) == before


def _wooden_chair(bpy: Any) -> Any:
    """A chair the starter model never saw: cubes only, a tall back, brown wood (not in the sample palette)."""
    import bmesh
    from mathutils import Matrix

    bm = bmesh.new()

    def box(center: tuple[float, float, float], size: tuple[float, float, float]) -> None:
        bmesh.ops.create_cube(bm, size=1.0, matrix=Matrix.Translation(center) @ Matrix.Diagonal((*size, 1.0)))

    w, d, h = 0.56, 0.5, 0.44
    box((0, 0, h), (w, d, 0.05))  # seat
    box((0, d / 2 - 0.03, h + 0.35), (w, 0.04, 0.66))  # back
    for sx in (-1, 1):
        for sy in (-1, 1):
            box((sx * (w / 2 - 0.04), sy * (d / 2 - 0.04), (h - 0.025) / 2), (0.05, 0.05, h - 0.025))
    mesh = bpy.data.meshes.new("WoodenChair")
    bm.to_mesh(mesh)
    bm.free()
    mat = bpy.data.materials.new("wood")
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.45, 0.25, 0.1, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    mesh.materials.append(mat)
    obj = bpy.data.objects.new("WoodenChair", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


@pytest.mark.slow
def test_starter_model_embeds_a_new_asset(blender: Any, tmp_path: Path) -> None:
    from backend.service.engine import Engine
    from blender_addon.capture import capture_asset
    from shared import bundle as B

    run_dir = starter_run_dir()
    before = _snapshot(run_dir)
    recipe = load_recipe()
    captured = capture_asset(_wooden_chair(blender), tmp_path / "bundle", size=recipe["capture"]["size"],
                             samples=recipe["capture"]["samples"], device="CPU", source_blend="//new_chairs.blend")
    archive = B.write_archive(captured, tmp_path / "bundle.zip")

    engine = Engine.open(run_dir, catalogue_path=tmp_path / "catalogue.sqlite", generic=True)
    try:
        assert engine.info().generic is True and engine.info().assets == starter_manifest()["data"]["assets"]
        assert engine.info().instant_embed is True  # the starter ships its encoder: Embed answers at once
        result = engine.embed(B.read_bundle(archive), lambda f, m: None, threading.Event())
    finally:
        engine.close()

    assert result.model_id == starter_manifest()["model_id"]
    assert len(result.shape) == 32 and len(result.texture) == 32
    assert result.psnr is not None and result.psnr > 18.0  # the decoder reconstructs the new chair's views
    # Generic furniture tags: a seat, not a lamp or a table.
    probs, proposed = result.predicted_tags, result.proposed_tags
    assert "seating" in proposed, probs
    assert not {"lamp", "lighting", "table"} & set(proposed), proposed
    assert probs["seating"] > max(probs["lighting"], probs["table"]) + 0.3
    # Neighbours in shape space are the sample library's chairs.
    shape = result.neighbours["shape"]
    assert len(shape) == 10 and shape[0].category == "Furniture/Chairs"
    assert sum(n.category == "Furniture/Chairs" for n in shape[:5]) >= 4, shape[:5]
    assert _snapshot(run_dir) == before, "the test wrote into the starter model folder"

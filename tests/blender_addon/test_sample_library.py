"""The procedural sample library: balanced ground truth, real marked assets in .blend files."""

from __future__ import annotations

import json
from collections import Counter

from blender_addon.headless import sample_library as lib


def test_ground_truth_is_complete_and_balanced(sample_library):
    truth = json.loads((sample_library / lib.GROUND_TRUTH).read_text())
    assets = truth["assets"]
    assert len(assets) >= 60
    families = Counter(a["family"] for a in assets)
    assert set(families) == {"chair", "table", "sofa", "lamp"} and set(families.values()) == {18}
    for fam in families:
        members = [a for a in assets if a["family"] == fam]
        # Every colour x material combination exactly once per family: texture independent of shape.
        combos = Counter((a["texture"]["color"], a["texture"]["material"]) for a in members)
        assert len(combos) == 18 and set(combos.values()) == {1}
        # Each shape combination appears, balanced within one.
        shapes = Counter(json.dumps(a["shape"], sort_keys=True) for a in members)
        assert max(shapes.values()) - min(shapes.values()) <= 1
    chair = next(a for a in assets if a["family"] == "chair")
    assert chair["shape"]["armrests"] in (True, False) and chair["shape"]["base"] in ("swivel", "legs")
    assert chair["shape"]["seats"] is None and chair["shape"]["shade"] is None  # not a chair attribute
    assert set(chair["shape"]) == set(lib.SHAPE_KEYS)
    sizes = {fam: [a["size"] for a in assets if a["family"] == fam] for fam in families}
    assert all(s[0] > 1.1 for s in sizes["sofa"])  # sofas are wide
    assert max(s[2] for s in sizes["lamp"]) > 1.4 and min(s[2] for s in sizes["lamp"]) < 0.7  # floor and desk
    assert all(0.7 < s[2] < 1.3 for s in sizes["chair"])
    assert truth["families"][0]["blend"] == "families.blend"
    for a in assets:
        assert a["texture"]["color"] in a["tags"] and a["family"] in a["tags"]


def test_blend_files_hold_marked_assets_with_tags_and_catalogue(blender, sample_library):
    bpy = blender
    truth = json.loads((sample_library / lib.GROUND_TRUTH).read_text())
    catalogues = lib.read_catalog_file(sample_library)
    assert set(catalogues.values()) == {"Furniture/Chairs", "Furniture/Tables", "Furniture/Sofas", "Lighting/Lamps"}
    for blend in ("chairs.blend", "lamps.blend"):
        bpy.ops.wm.open_mainfile(filepath=str(sample_library / blend))
        expected = {a["name"]: a for a in truth["assets"] if a["blend"] == blend}
        marked = {ob.name: ob for ob in bpy.data.objects if ob.asset_data is not None}
        assert set(marked) == set(expected)
        for name, ob in marked.items():
            assert [t.name for t in ob.asset_data.tags] == expected[name]["tags"]
            assert catalogues[ob.asset_data.catalog_id] == expected[name]["category"]
            assert [round(v, 4) for v in ob.dimensions] == expected[name]["size"]
            assert len(ob.data.materials) == 1
            assert ob.data.materials[0].name == "{color}_{material}".format(**expected[name]["texture"])


def test_library_is_deterministic_per_seed(blender, sample_library, tmp_path):
    same = lib.build_sample_library(tmp_path / "same", seed=0)
    assert same == json.loads((sample_library / lib.GROUND_TRUTH).read_text())
    other = lib.build_sample_library(tmp_path / "other", seed=1)
    assert other["assets"] != same["assets"]

"""Parametric families: discovery, grid/random sampling, variants captured with their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from shared import metadata
from tests.blender_addon.blender_helpers import box, rgba

pytestmark = pytest.mark.slow  # renders with Cycles


def _open_family(bpy, library):
    bpy.ops.wm.open_mainfile(filepath=str(library / "families.blend"))
    return bpy.data.objects["ParametricTable"]


def test_discovery_finds_gn_custom_property_and_material_parameters(blender, sample_library):
    from blender_addon.family import discover_parameters, family_name

    obj = _open_family(blender, sample_library)
    params = {p.key: p for p in discover_parameters(obj)}
    assert set(params) == {"Table/Width", "Table/Depth", "Table/Height", "Table/Legs", "a2v_top_thickness",
                           "ParametricTable_wood/Hue/Saturation/Value/Hue"}
    assert (params["Table/Width"].min, params["Table/Width"].max) == (0.6, 1.6)
    assert params["Table/Legs"].kind == "int" and (params["Table/Legs"].min, params["Table/Legs"].max) == (3, 6)
    assert (params["a2v_top_thickness"].min, params["a2v_top_thickness"].max) == (0.02, 0.1)
    assert (params["ParametricTable_wood/Hue/Saturation/Value/Hue"].min,
            params["ParametricTable_wood/Hue/Saturation/Value/Hue"].max) == (0.0, 1.0)
    # Top Thickness is driven by the custom property, so it is not a free GN parameter.
    assert "Table/Top Thickness" not in params
    assert family_name(obj) == "Parametric Table"


def test_sampling_grid_and_random(blender, sample_library):
    from blender_addon.family import FamilyError, discover_parameters, sample_family

    obj = _open_family(blender, sample_library)
    params = discover_parameters(obj)
    grid = sample_family(obj, 10, mode="grid")
    assert len(grid) == 10
    assert len({tuple(sorted(v.items())) for v in grid}) == 10
    for variant in grid + sample_family(obj, 10, mode="random", seed=3):
        for p in params:
            assert p.min <= variant[p.key] <= p.max
        assert isinstance(variant["Table/Legs"], int)
    # The grid spans the ranges: both extremes of every parameter appear.
    for p in params:
        values = {v[p.key] for v in grid}
        assert min(values) == pytest.approx(p.min) and max(values) == pytest.approx(p.max)
    assert sample_family(obj, 5, mode="random", seed=1) == sample_family(obj, 5, mode="random", seed=1)
    assert sample_family(obj, 5, mode="random", seed=1) != sample_family(obj, 5, mode="random", seed=2)
    with pytest.raises(FamilyError, match="grid' or 'random"):
        sample_family(obj, 3, mode="sobol")
    with pytest.raises(FamilyError, match="at least 1"):
        sample_family(obj, 0)
    plain = box("Plain")
    with pytest.raises(FamilyError, match="no family parameters"):
        sample_family(plain, 3)


def test_custom_property_parameter_drives_geometry_and_is_restored(blender, sample_library):
    from blender_addon.content_hash import content_hash
    from blender_addon.family import FamilyError, applied

    obj = _open_family(blender, sample_library)
    before = content_hash(obj)
    with applied(obj, {"a2v_top_thickness": 0.1}):
        assert obj["a2v_top_thickness"] == pytest.approx(0.1)
        assert content_hash(obj) != before  # the driver made the top thicker
    assert obj["a2v_top_thickness"] == pytest.approx(0.04)
    assert content_hash(obj) == before
    with pytest.raises(FamilyError, match="no family parameter"):
        with applied(obj, {"nope": 1}):
            pass


def test_capture_family_records_parameters_and_gives_distinct_variants(blender, sample_library, tmp_path):
    from blender_addon.family import capture_family, discover_parameters

    obj = _open_family(blender, sample_library)
    originals = {p.key: p.get() for p in discover_parameters(obj)}
    bundles = capture_family(obj, 3, tmp_path, mode="random", seed=7, size=32, samples=2, device="CPU")
    assert [b.root.name for b in bundles] == ["Parametric_Table__v000", "Parametric_Table__v001",
                                              "Parametric_Table__v002"]
    assert len({b.asset.content_hash for b in bundles}) == 3
    for b in bundles:
        assert b.asset.family == "Parametric Table"
        assert set(b.asset.parameters) == set(originals)
        # The recorded width is the captured width.
        assert b.asset.size[0] == pytest.approx(b.asset.parameters["Table/Width"], abs=1e-3)
    images = [rgba(b.root / b.frames[0].file_path) for b in bundles]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    assert {p.key: p.get() for p in discover_parameters(obj)} == originals
    assert obj.get(metadata.FAMILY_NAME) == "Parametric Table"

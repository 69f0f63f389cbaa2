"""The add-on registers its settings, operator and panel, and the capture operator runs headless."""

from __future__ import annotations

import pytest

from shared import bundle
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # renders with Cycles


def test_register_and_capture_operator(addon, tmp_path):
    bpy = addon
    scene = bpy.context.scene
    assert hasattr(bpy.types, "ASSET2VEC_PT_capture")
    settings = scene.asset2vec
    assert (settings.capture_size, settings.capture_samples) == (128, 16)
    settings.capture_size, settings.capture_samples = 32, 2
    settings.output_dir = str(tmp_path)
    obj = box("Stool", size=(0.4, 0.4, 0.5))
    bpy.context.view_layer.objects.active = obj

    assert bpy.ops.asset2vec.capture() == {"FINISHED"}
    b = bundle.read_bundle(tmp_path / "Stool", expected_size=32)
    assert b.asset.size == pytest.approx((0.4, 0.4, 0.5), abs=1e-5)

    light = bpy.data.objects.new("Spot", bpy.data.lights.new("Spot", "SPOT"))
    scene.collection.objects.link(light)
    bpy.context.view_layer.objects.active = light
    with pytest.raises(RuntimeError, match="is a light"):  # the operator's ERROR report
        bpy.ops.asset2vec.capture()

    # Relative output folder in an unsaved file: a clear error, not a folder next to nowhere.
    settings.output_dir = "//views"
    bpy.context.view_layer.objects.active = obj
    with pytest.raises(RuntimeError, match="not saved"):
        bpy.ops.asset2vec.capture()


def test_unregister_removes_everything(blender):
    import blender_addon

    blender_addon.register()
    blender_addon.unregister()
    assert not hasattr(blender.types.Scene, "asset2vec")
    assert not hasattr(blender.types, "ASSET2VEC_PT_capture")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device", "/views/Stool/views/03.png"),
                                   bundle.BundleError("transforms.json: frames must be a list")])
def test_capture_operator_reports_file_and_bundle_errors(addon, tmp_path, monkeypatch, error):
    from blender_addon import operators

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(operators, "capture_asset", fail)
    addon.context.scene.asset2vec.output_dir = str(tmp_path)
    addon.context.view_layer.objects.active = box("Stool")
    with pytest.raises(RuntimeError) as caught:  # the operator's ERROR report, not a Python traceback
        addon.ops.asset2vec.capture()
    assert "Traceback" not in str(caught.value)
    assert ("No space left on device: /views/Stool/views/03.png" if isinstance(error, OSError)
            else "frames must be a list") in str(caught.value)

"""The add-on registers its settings, operator and panel, and the capture operator runs headless."""

from __future__ import annotations

import time

import pytest

from bench import panel_preview
from blender_addon import capture_job, panels, preferences, session
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

    assert bpy.ops.asset2vec.capture() == {"FINISHED"}  # the first slice; the timer renders the views
    job = capture_job.pump()
    assert job.state == capture_job.DONE and job.message.startswith("captured 'Stool' (0.40 x 0.40 x 0.50 m)")
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
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(capture_job.Capture, "step", fail)
    addon.context.scene.asset2vec.output_dir = str(tmp_path)
    addon.context.view_layer.objects.active = box("Stool")
    with pytest.raises(RuntimeError) as caught:  # the operator's ERROR report, not a Python traceback
        addon.ops.asset2vec.capture()
    assert "Traceback" not in str(caught.value)
    assert ("No space left on device: /views/Stool/views/03.png" if isinstance(error, OSError)
            else "frames must be a list") in str(caught.value)


def test_capture_views_renders_in_slices_and_never_freezes_blender(addon, tmp_path, monkeypatch):
    """Capture Views is stepped like Embed: each main-thread step is one view (timed here), the panel shows
    progress meanwhile, and an error in a later slice reaches the panel's status line."""
    bpy = addon
    settings = bpy.context.scene.asset2vec
    settings.output_dir = str(tmp_path)
    prefs = preferences.get()
    prefs.capture_size, prefs.capture_samples = 64, 8
    bpy.context.view_layer.objects.active = box("Crate", size=(0.6, 0.4, 0.4))
    t0 = time.perf_counter()
    assert bpy.ops.asset2vec.capture() == {"FINISHED"}
    steps = [time.perf_counter() - t0]  # the operator: the first slice only
    job = capture_job.current()
    assert job.running and job.capture.done == 0
    rec = panel_preview.Recorder()
    panels.ASSET2VEC_PT_capture.draw(type("Panel", (), {"layout": rec})(), bpy.context)
    assert any(it[0] == "progress" for it in rec.flat())
    while True:
        t = time.perf_counter()
        running = session.get().step()  # what the timer does between Blender's redraws
        steps.append(time.perf_counter() - t)
        if not running:
            break
    assert job.state == capture_job.DONE, job.message
    assert len(list((tmp_path / "Crate" / "views").glob("*.png"))) == 18
    steps.sort()
    print(f"capture steps at 64 px, 8 samples: max {steps[-1]:.3f} s, p90 {steps[int(0.9 * len(steps))]:.3f} s, "
          f"{len(steps)} steps")
    assert len(steps) >= 19 and steps[-1] <= 0.2, steps[-3:]  # no step over the 0.2 s the issue allows (sorted)
    assert session.get().status["capture"][1].startswith("captured 'Crate'")

    render = capture_job.Capture._render

    def fail_later(self, view):  # a disk that fills up after the first view
        if self.done >= 1:
            raise OSError(28, "No space left on device", str(tmp_path / "Crate" / "views" / "01.png"))
        return render(self, view)  # True: the view is done (False: a band of it)

    monkeypatch.setattr(capture_job.Capture, "_render", fail_later)
    assert bpy.ops.asset2vec.capture() == {"FINISHED"}
    job = capture_job.pump()
    assert job.state == capture_job.FAILED
    level, message = session.get().status["capture"]
    assert level == "ERROR" and message.startswith("capture failed: No space left on device")
    assert job.capture.done == 1 and [s.name for s in bpy.data.scenes] == ["Scene"]  # its render scene is gone


def test_capture_views_can_be_cancelled(addon, tmp_path):
    bpy = addon
    bpy.context.scene.asset2vec.output_dir = str(tmp_path)
    prefs = preferences.get()
    prefs.capture_size, prefs.capture_samples = 32, 2
    bpy.context.view_layer.objects.active = box("Crate")
    assert bpy.ops.asset2vec.capture() == {"FINISHED"}
    job = capture_job.current()
    session.get().step()  # view 0
    rec = panel_preview.Recorder()
    panels.ASSET2VEC_PT_capture.draw(type("Panel", (), {"layout": rec})(), bpy.context)
    assert any(it[0] == "button" and it[3] == "asset2vec.capture_cancel" for it in rec.flat())
    assert bpy.ops.asset2vec.capture_cancel() == {"FINISHED"}
    capture_job.pump()
    assert job.state == capture_job.CANCELLED and "cancelled" in job.message
    assert [s.name for s in bpy.data.scenes] == ["Scene"]  # its render scene is gone
    assert (tmp_path / "Crate" / "views" / "00.png").is_file()  # the views rendered so far stay
    assert bpy.ops.asset2vec.capture_cancel() == {"CANCELLED"}  # none runs now

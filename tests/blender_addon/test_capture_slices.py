"""Capture in slices (blender_addon.capture.Capture): the same files as the one-shot capture, the user's data
untouched between slices, no temporary datablock ever saved or left behind after a save, a load or a cancel;
and Embed's timer steps short enough that Blender never freezes (real bpy, real Cycles, a served backend)."""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pytest

from blender_addon import embed_job, session
from blender_addon.capture import Capture, CaptureError, capture_asset, view_bands
from shared import bundle, rig
from tests.blender_addon.addon_support import configure
from tests.blender_addon.blender_helpers import box, rgba

pytestmark = pytest.mark.slow  # renders with Cycles

SIZE, SAMPLES = 32, 4
#: The longest main-thread step the issue allows (Blender's UI must not freeze longer).
STALL_LIMIT = 0.2


def _temporary(bpy) -> dict[str, list[str]]:
    """The capture's temporary datablocks still in the file (none once a capture is closed)."""
    found = {
        "scenes": [s.name for s in bpy.data.scenes if s.name.startswith("Asset2Vec")],
        "objects": [o.name for o in bpy.data.objects if o.name.startswith("a2v:")],
        "worlds": [w.name for w in bpy.data.worlds if w.name.startswith("Asset2Vec")],
    }
    return {k: v for k, v in found.items() if v}


def _same_files(a, b) -> None:
    """Two bundle folders hold the same views (pixel for pixel) and the same transforms.json."""
    for i in range(rig.NUM_VIEWS):
        name = f"{bundle.VIEWS_DIR}/{i:02d}.png"
        assert np.array_equal(rgba(a / name), rgba(b / name)), f"view {i} differs"
    assert json.loads((a / bundle.TRANSFORMS).read_text()) == json.loads((b / bundle.TRANSFORMS).read_text())


@pytest.mark.parametrize(
    ("size", "samples", "bands", "expected_bands"),
    [
        (SIZE, SAMPLES, None, 1),  # small views: one view per step
        (128, 16, None, 4),  # the default settings: each view in four bands, one per step
        (37, 4, 3, 3),  # bands of 12, 12, 13 rows, seams where border * size rounds down: no row lost or doubled
    ],
)
def test_slices_give_the_one_shot_files_and_leave_the_users_data_alone(
    blender, tmp_path, size, samples, bands, expected_bands
):
    bpy = blender
    target = box("Crate", size=(2.0, 1.0, 0.5), location=(5.0, -3.0, 1.0))
    user_scene = bpy.context.scene
    # The one-shot capture renders whole views: the sliced views must match them pixel for pixel, bands or not.
    one_shot = capture_asset(target, tmp_path / "one", size=size, samples=samples, device="CPU")

    capture = Capture(target, tmp_path / "sliced", size=size, samples=samples, device="CPU", bands=bands)
    steps = 0
    while capture.step():
        steps += 1
        # Between slices: the asset is in the user's scene only, the user's scene is still the active one, and
        # the render scene holds copies of the asset, never the asset itself.
        assert list(target.users_scene) == [user_scene] and bpy.context.scene == user_scene
        assert _temporary(bpy)["scenes"] == ["Asset2Vec Capture"]
        assert target.name not in bpy.data.scenes["Asset2Vec Capture"].objects
    # Set up, then one band per step (the last step writes transforms.json).
    assert capture.bands == expected_bands and steps == 1 + rig.NUM_VIEWS * expected_bands
    assert capture.bundle is not None and capture.bundle.asset == one_shot.asset
    _same_files(tmp_path / "one", tmp_path / "sliced")
    assert _temporary(bpy) == {} and not [i for i in bpy.data.images if i.type == "RENDER_RESULT"]
    assert not bpy.data.images  # bands are read back from files, not Images (an Image makes renders sync anew)
    assert sorted(p.name for p in (tmp_path / "sliced").iterdir()) == [bundle.TRANSFORMS, bundle.VIEWS_DIR]


def test_bands_follow_the_work_per_view_not_the_clock():
    assert [view_bands(size, 16, "CPU") for size in (32, 64, 128, 256)] == [1, 1, 4, 16]
    assert view_bands(64, 64, "CPU") == 4 and view_bands(128, 16, "GPU") == 1
    assert view_bands(1024, 4096, "CPU") == 128  # bands of 8 rows at most: thinner ones cost more than they save
    with pytest.raises(CaptureError, match="bands must be"):
        Capture(None, "unused", size=32, bands=17)


@pytest.mark.parametrize("bands", [1, 3])  # with 3 bands the save comes between two bands of view 1
def test_a_save_midway_never_writes_the_temporary_scene_and_the_capture_goes_on(blender, tmp_path, bands):
    bpy = blender
    target = box("Lamp", size=(0.5, 0.5, 1.5))
    capture_asset(target, tmp_path / "one", size=SIZE, samples=SAMPLES, device="CPU")
    capture = Capture(target, tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU", bands=bands)
    for _ in range(5):
        assert capture.step()
    assert capture.done == 4 // bands
    saved = tmp_path / "mine.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved))  # the artist presses Ctrl+S mid-capture
    assert _temporary(bpy) == {}  # removed before the file was written
    while capture.step():
        pass
    _same_files(tmp_path / "one", tmp_path / "sliced")  # set up again after the save: still the same views
    assert _temporary(bpy) == {}
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    assert _temporary(bpy) == {} and [s.name for s in bpy.data.scenes] == ["Scene"]


def test_opening_another_file_midway_ends_the_capture_cleanly(blender, tmp_path):
    bpy = blender
    other = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(other))
    target = box("Chair")
    capture = Capture(target, tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU")
    assert capture.step() and capture.step()
    bpy.ops.wm.open_mainfile(filepath=str(other))
    with pytest.raises(CaptureError, match="another file was opened"):
        capture.step()
    capture.close()  # idempotent: nothing left to remove
    assert _temporary(bpy) == {}


def test_a_cancelled_capture_removes_its_scene(blender, tmp_path):
    bpy = blender
    capture = Capture(box("Sofa"), tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU", bands=3)
    assert capture.step() and capture.step()  # set up, then view 0's first band
    assert _temporary(bpy) and capture.done == 0
    capture.close()
    assert _temporary(bpy) == {} and capture.bundle is None
    assert [p.name for p in (tmp_path / "sliced").iterdir()] == [bundle.VIEWS_DIR]  # no band file left behind


@pytest.mark.parametrize("size", [64, 128])
def test_embed_never_holds_the_main_thread_longer_than_a_view(addon, backend, capsys, size):
    """Embed at 64 and 128 px (the default), 16 samples: every timer step (what Blender's UI waits for) is timed
    with perf_counter. At 128 px a whole view takes longer than the limit here, so each is rendered in bands."""
    bpy = addon
    prefs = configure(backend.url)
    prefs.capture_size, prefs.capture_samples = size, 16
    obj = box("Table", size=(1.2, 0.8, 0.7))
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    sess = session.get()
    t0 = time.perf_counter()
    assert bpy.ops.asset2vec.embed() == {"FINISHED"}  # the operator does the first slice (the set-up)
    steps = [time.perf_counter() - t0]
    done = ["set up"]  # what each step did (the job's message after it), to name the longest
    deadline = time.monotonic() + 120
    job = embed_job.current()
    while job.running:
        assert time.monotonic() < deadline, job.message
        t = time.perf_counter()
        interval = sess.tick()  # what Blender's timer calls; the UI waits for it
        steps.append(time.perf_counter() - t)
        done.append(job.message)
        time.sleep(interval or 0.0)
    assert job.state == embed_job.DONE, job.message
    assert _temporary(bpy) == {}
    ordered = sorted(steps)
    worst, median, p90 = ordered[-1], statistics.median(steps), ordered[int(0.9 * (len(steps) - 1))]
    longest = sorted(zip(steps, done, strict=True), reverse=True)[:3]
    with capsys.disabled():
        print(
            f"\nEmbed at {size} px, 16 samples: {len(steps)} main-thread steps, max {worst:.3f} s, "
            f"90th percentile {p90:.3f} s, median {median:.3f} s; longest: "
            + ", ".join(f"{t:.3f} s ({what})" for t, what in longest)
        )
    # Measured on the shared 2-core CPU (load 0.3-4): longest 0.03-0.06 s at 64 and at 128 px in 4 bands (whole
    # 128 px views: 0.13-0.35 s); with both cores saturated by other processes, 0.26 s (whole views: 0.65 s).
    assert worst <= STALL_LIMIT, (worst, p90, median, longest)


def _tick_until(job, until, timeout: float = 120.0) -> None:
    """Step the session's timer (as Blender does, pausing as it asks) until ``until()`` holds."""
    sess = session.get()
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"never reached; the job says {job.message!r}"
        time.sleep(sess.tick() or 0.0)


def test_cancel_mid_capture_removes_the_temporary_scene_at_once(addon, backend):
    bpy = addon
    configure(backend.url)
    bpy.context.view_layer.objects.active = box("Stool")
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    assert bpy.ops.asset2vec.embed() == {"FINISHED"}
    job = embed_job.current()
    _tick_until(job, lambda: job._capture is not None and job._capture.done >= 3)
    assert _temporary(bpy)["scenes"] == ["Asset2Vec Capture"]
    assert "view 3/18" in job.message
    assert bpy.ops.asset2vec.embed_cancel() == {"FINISHED"}
    session.get().tick()
    assert _temporary(bpy) == {}  # gone at the next step, not when the backend side ends
    job = embed_job.pump(timeout=60)
    assert job.state == embed_job.CANCELLED and _temporary(bpy) == {}


def test_a_family_variants_inputs_are_applied_only_while_it_is_set_up(addon, backend):
    from shared import metadata as M

    bpy = addon
    configure(backend.url)
    obj = box("Shelf", size=(0.8, 0.3, 1.2))
    key = f"{M.FAMILY_PARAM_PREFIX}width"
    obj[key] = 0.8
    obj.id_properties_ui(key).update(min=0.4, max=1.6)
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    assert bpy.ops.asset2vec.embed(mode="FAMILY", variants=2) == {"FINISHED"}
    job = embed_job.current()
    seen = set()

    def between_steps() -> bool:
        assert obj[key] == pytest.approx(0.8)  # the artist's value whenever Blender's UI runs
        if job._capture is not None:
            seen.add(job._next)
        return not job.running

    _tick_until(job, between_steps)
    assert job.state == embed_job.DONE, job.message
    assert seen == {0, 1} and _temporary(bpy) == {}


def test_an_undo_midway_never_touches_the_old_id_and_the_capture_goes_on(blender, tmp_path):
    """The capture finds its asset again by name after an undo (the old Python ID may point to freed memory), and
    the undo step taken while the render scene existed does not bring that scene back."""
    bpy = blender
    target = box("Crate", size=(0.6, 0.4, 0.4))
    capture_asset(target, tmp_path / "one", size=SIZE, samples=SAMPLES, device="CPU")
    capture = Capture(target, tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU")
    assert capture.step() and capture.step()  # set up, view 0
    assert bpy.ops.ed.undo_push(message="mid-capture") == {"FINISHED"}  # holds the render scene
    target.location.x += 1.0  # an edit, undone below (the asset as captured comes back)
    assert bpy.ops.ed.undo_push(message="moved") == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert _temporary(bpy) == {}  # torn down before the undo, and the restored step's copy removed after it
    assert bpy.data.objects["Crate"].location.x == pytest.approx(0.0)
    while capture.step():
        pass
    assert capture.bundle is not None and capture.bundle.asset.asset_name == "Crate"
    _same_files(tmp_path / "one", tmp_path / "sliced")
    assert _temporary(bpy) == {}


def test_an_asset_deleted_and_undone_away_ends_the_capture_with_a_clear_error(blender, tmp_path):
    bpy = blender
    target = box("Bench")
    capture = Capture(target, tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU")
    assert capture.step() and capture.step()
    bpy.data.objects.remove(target)
    del target  # the test holds no reference either: only the capture's name
    assert bpy.ops.ed.undo_push(message="deleted") == {"FINISHED"}
    box("Other")
    assert bpy.ops.ed.undo_push(message="other") == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}  # back to the deletion: the render scene is rebuilt at the next step
    with pytest.raises(CaptureError, match="'Bench' was deleted or renamed"):
        capture.step()
    assert _temporary(bpy) == {}


def test_stale_capture_datablocks_go_at_load_and_at_set_up(addon, tmp_path):
    """Datablocks a capture left (an autosave or undo step taken mid-capture) are removed after a load, and at the
    next capture's set-up; the artist's own data stays."""
    from blender_addon.capture_guard import TMP_PROP

    bpy = addon

    def leave_stale() -> None:
        scene = bpy.data.scenes.new("Asset2Vec Capture")
        mesh = bpy.data.meshes.new("a2v:copy")
        ob = bpy.data.objects.new("a2v:copy", mesh)
        scene.collection.objects.link(ob)
        for block in (scene, mesh, ob):
            block[TMP_PROP] = True

    mine = box("Mine")
    mine["asset2vec_note"] = 1  # the artist's own custom property
    leave_stale()
    path = tmp_path / "autosave.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))  # no capture runs: nothing removes them before the save
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert _temporary(bpy) == {} and "a2v:copy" not in bpy.data.meshes
    assert "Mine" in bpy.data.objects and "Mine" in bpy.data.meshes and [s.name for s in bpy.data.scenes] == ["Scene"]

    leave_stale()
    capture = Capture(bpy.data.objects["Mine"], tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU")
    assert capture.step()  # the set-up removes the stale ones, builds its own
    assert _temporary(bpy)["scenes"] == ["Asset2Vec Capture"] and "a2v:copy" not in bpy.data.objects
    assert bpy.ops.ed.undo_push(message="mid-capture") == {"FINISHED"}
    capture.close()
    assert _temporary(bpy) == {}
    box("Later")
    assert bpy.ops.ed.undo_push(message="later") == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}  # back to the step holding the (now ownerless) render scene
    assert _temporary(bpy) == {} and "Mine" in bpy.data.objects


def test_overlapping_captures_leave_no_render_result_and_none_is_saved(blender, tmp_path):
    bpy = blender

    def render_results() -> list[str]:
        return [i.name for i in bpy.data.images if i.type == "RENDER_RESULT"]

    a = Capture(box("A"), tmp_path / "a", size=SIZE, samples=SAMPLES, device="CPU")
    assert a.step() and a.step() and render_results()
    b = Capture(box("B"), tmp_path / "b", size=SIZE, samples=SAMPLES, device="CPU")  # starts after a rendered
    assert b.step() and b.step()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "mine.blend"))
    assert not render_results()  # removed before the save
    assert b.step() and b.step()  # set up again, a view
    a.close()
    assert render_results()  # b still runs
    b.close()
    assert not render_results()


def test_a_save_after_the_last_view_does_not_set_up_again(blender, tmp_path):
    bpy = blender
    capture = Capture(box("Stool"), tmp_path / "sliced", size=SIZE, samples=SAMPLES, device="CPU")
    while capture.done < capture.total:
        assert capture.step()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "mine.blend"))
    assert _temporary(bpy) == {}

    def no_set_up() -> None:
        raise AssertionError("set up again after the last view")

    capture._set_up = no_set_up
    assert not capture.step() and capture.bundle is not None

"""Issue 19's catalogue hygiene in the add-on, with real bpy (and a backend served on loopback where one is needed):
Forget This Asset, an unsaved embed never suggested to another asset, "xn copies" in the Similar list, and the
optional catalog assignment into the library's blender_assets.cats.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import panel_preview
from blender_addon import catalogs, embed_job, forget, preferences, session, writeback
from blender_addon.embed_target import Options, write_answers
from blender_addon.panels import copies_label
from shared import api
from shared.client import Client
from shared.naming import CATALOG_FILE
from tests.blender_addon.addon_support import configure, run_embed, support
from tests.blender_addon.blender_helpers import box


def _result(
    name: str,
    predicted: dict[str, float] | None = None,
    proposed: dict[str, float] | None = None,
    neighbours: list[dict] | None = None,
) -> api.EmbedResult:
    return api.EmbedResult.from_json(
        {
            "name": name,
            "model_id": "m",
            "shape": [0.0] * 4,
            "texture": [0.0] * 4,
            "threshold": 0.5,
            "predicted_tags": predicted or {},
            "proposed_tags": proposed or {},
            "neighbours": {"both": neighbours or []},
        }
    )


def _buttons(rec) -> list[str]:
    return [it[3] for it in rec.flat() if it[0] == "button"]


# -- Forget This Asset --------------------------------------------------------------------------------------


@pytest.mark.slow  # serves the tiny trained run
def test_forget_this_asset_removes_it_from_the_catalogue_only(addon, backend, engine, tmp_path):
    bpy = addon
    configure(backend.url)
    names = sorted(engine.catalogue.asset_names())
    crate = box("Crate")
    crate.asset_mark()
    crate.asset_data.tags.new("mine")
    bpy.context.view_layer.objects.active = crate
    assert "asset2vec.forget_asset" not in _buttons(dict(panel_preview.draw_panels(bpy.context))["Asset2Vec"])
    with pytest.raises(RuntimeError, match="press Embed first"):  # never embedded: nothing to forget (an error)
        bpy.ops.asset2vec.forget_asset()

    writeback.write_result(crate, _result(names[0]))  # as if Embed had catalogued it under that name
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "props.blend"))
    stored, on_disk = writeback.read_metadata(crate), (tmp_path / "props.blend").read_bytes()
    assert "asset2vec.forget_asset" in _buttons(dict(panel_preview.draw_panels(bpy.context))["Asset2Vec"])

    assert bpy.ops.asset2vec.forget_asset() == {"FINISHED"}  # scripts run it without the confirmation dialog
    task = forget.pump()
    assert task.state == "done", task.message
    level, message = session.get().status["embed"]
    assert level == "INFO" and f"forgot {names[0]!r}" in message and "the .blend is unchanged" in message
    assert names[0] not in engine.catalogue.asset_names()
    # The .blend is untouched: the asset, its tags and its Asset2Vec data are as they were; the file on disk too.
    assert writeback.read_metadata(crate) == stored and [t.name for t in crate.asset_data.tags] == ["mine"]
    assert (tmp_path / "props.blend").read_bytes() == on_disk and not list(tmp_path.glob("*.blend1"))

    # Forgetting it again: the backend's clear refusal reaches the status line.
    assert bpy.ops.asset2vec.forget_asset() == {"FINISHED"}
    assert forget.pump().state == "failed"
    level, message = session.get().status["embed"]
    assert level == "ERROR" and f"no asset named {names[0]!r}" in message

    # A family embed stands for its variants: each is forgotten.
    family = box("Shelf")
    writeback.write_result(family, _result(names[1]), family_members=[{"name": names[1]}, {"name": names[2]}])
    bpy.context.view_layer.objects.active = family
    assert forget.catalogue_names(family) == [names[1], names[2]]
    assert bpy.ops.asset2vec.forget_asset() == {"FINISHED"}
    assert forget.pump().state == "done"
    assert not {names[1], names[2]} & set(engine.catalogue.asset_names())
    assert "forgot 2 of 2" in session.get().status["embed"][1]


# -- an unsaved embed is never another asset's neighbour -------------------------------------------------


@pytest.mark.slow  # renders with Cycles; serves the tiny trained run
def test_an_unsaved_embed_is_answered_but_never_another_assets_neighbour(addon, backend, engine, tmp_path):
    bpy = addon
    configure(backend.url)
    crate = box("Crate", size=(0.6, 0.4, 0.4), color=(0.1, 0.3, 0.9))
    bpy.context.view_layer.objects.active = crate
    job = run_embed(bpy)  # the file was never saved: catalogued as unsaved/Crate
    assert job.state == embed_job.DONE, job.message
    assert writeback.read_metadata(crate)["asset_name"] == "unsaved/Crate"
    assert writeback.neighbours(crate)  # it is answered: its own neighbours

    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "props.blend"))
    job = run_embed(bpy)  # the same object, now saved: the same views, the same code, another name
    assert job.state == embed_job.DONE, job.message
    saved = writeback.read_metadata(crate)["asset_name"]
    assert saved != "unsaved/Crate" and saved.endswith("/Crate")
    assert "unsaved/Crate" not in [n["name"] for n in writeback.neighbours(crate)]
    client = Client(backend.url)
    for name in engine.catalogue.asset_names():
        for space in api.SPACES:
            found = [n.name for n in client.neighbours(name, space, k=api.MAX_K).neighbours]
            assert "unsaved/Crate" not in found, (name, space)
    # Only the rule keeps it out: without it the unsaved twin is the saved crate's nearest asset.
    from backend.library.similarity import SimilarityIndex

    table = engine.catalogue.codes(engine.model_id)
    assert SimilarityIndex(table, "both", listed_only=False).similar(saved, k=1)[0].name == "unsaved/Crate"


# -- copies in the Similar list ----------------------------------------------------------------------------


def test_the_similar_list_shows_how_many_copies_a_suggestion_stands_for(addon):
    bpy = addon
    crate = box("Crate")
    bpy.context.view_layer.objects.active = crate
    writeback.write_result(
        crate,
        _result(
            "lib/Crate",
            neighbours=[
                {
                    "name": "lib/Chair",
                    "distance": 0.2,
                    "source_file": "/lib/lib.blend",
                    "asset_name": "Chair",
                    "copies": 3,
                },
                {"name": "lib/Stool", "distance": 0.4, "source_file": "/lib/lib.blend", "asset_name": "Stool"},
            ],
        ),
    )
    stored = writeback.neighbours(crate, "both")
    assert stored[0]["copies"] == 3 and "copies" not in stored[1]
    texts = dict(panel_preview.draw_panels(bpy.context))["Similar Assets"].texts()
    assert copies_label(stored[0]) in texts and copies_label(stored[0]).startswith("\u00d73 copies")
    assert sum("copies" in t for t in texts) == 1  # a single asset says nothing


# -- catalog assignment -------------------------------------------------------------------------------------

CHAIRS = "0d8c0f1e-1111-4a4a-9b9b-000000000001"
CATS = (
    "# This is an Asset Catalog Definition file for Blender.\n#\n# the studio's own comment\n\nVERSION 1\n\n"
    f"{CHAIRS}:Furniture/Chairs:Furniture-Chairs\n"
    "0d8c0f1e-1111-4a4a-9b9b-000000000002:Furniture/Sofas:Furniture-Sofas\n"
)
ARTISTS = "0d8c0f1e-1111-4a4a-9b9b-000000000003"


def _asset(name: str, tags: tuple[str, ...] = ()) -> object:
    obj = box(name)
    obj.asset_mark()
    for t in tags:
        obj.asset_data.tags.new(t)
    return obj


def _write(obj, result: api.EmbedResult, on: bool = True):
    options = Options(url="", assign_catalog=on, category_tags=("chair", "lamp", "sofa"))
    return write_answers(obj, {0: result}, [None], options, "test")


def test_catalog_assignment_is_off_by_default_and_reads_the_preferences(addon):
    assert preferences.catalog_settings() == (False, catalogs.DEFAULT_CATEGORY_TAGS)
    prefs = preferences.get()
    prefs.assign_catalog, prefs.category_tags = True, "Chair, lamp  chair"
    assert preferences.catalog_settings() == (True, ("chair", "lamp"))


def test_embed_takes_the_catalog_preferences(addon):
    bpy = addon
    prefs = configure(f"http://127.0.0.1:{support.free_port()}")  # no backend: the Embed fails at once
    prefs.assign_catalog, prefs.category_tags = True, "stool"
    bpy.context.view_layer.objects.active = box("Stool")
    try:  # the worker's backend check usually fails before the first capture step ends: the operator reports it
        bpy.ops.asset2vec.embed()
    except RuntimeError as e:
        assert "no Asset2Vec backend" in str(e)
    job = embed_job.current()  # the options the operator built from the preferences
    assert job is not None and job.options.assign_catalog and job.options.category_tags == ("stool",)
    if job.running:
        assert embed_job.pump(timeout=120).state == embed_job.FAILED


def test_catalog_assigned_when_on_untouched_when_off_never_over_the_artists(addon, tmp_path):
    bpy = addon
    lib = tmp_path / "lib"
    (lib / "props").mkdir(parents=True)
    cats = lib / CATALOG_FILE
    cats.write_text(CATS)
    chair, lamp, off, chosen, mine = (
        _asset("Chair"),
        _asset("Lamp"),
        _asset("Other"),
        _asset("Chosen"),
        _asset("Mine", ("chair",)),
    )
    chosen.asset_data.catalog_id = ARTISTS
    bpy.ops.wm.save_as_mainfile(filepath=str(lib / "props" / "seats.blend"))
    says_chair = _result("props/seats/Chair", {"chair": 0.95, "sofa": 0.3}, {"chair": 0.95})
    says_lamp = _result("props/seats/Lamp", {"lamp": 0.9, "chair": 0.1}, {"lamp": 0.9})

    # An existing catalog names the category ("chair" -> Furniture/Chairs): the file is not written.
    report = _write(chair, says_chair)
    assert chair.asset_data.catalog_id == CHAIRS and "Furniture/Chairs" in report.summary()
    assert cats.read_text() == CATS and not (lib / (CATALOG_FILE + "~")).exists()

    # No catalog for "lamp": a line in Blender's format is appended, every other line kept, the old file backed up.
    report = _write(lamp, says_lamp)
    text = cats.read_text()
    assert text.startswith(CATS) and text.count("\n") == CATS.count("\n") + 1
    new = catalogs.read_catalogs(cats)[-1]
    assert (new.path, new.simple_name) == ("Lamp", "Lamp") and text.endswith(f"{new.id}:Lamp:Lamp\n")
    assert lamp.asset_data.catalog_id == new.id and "added to blender_assets.cats.txt" in report.catalog
    assert (lib / (CATALOG_FILE + "~")).read_text() == CATS
    assert not list(lib.glob(".*.tmp"))  # the atomic write left no temporary file

    # Off (the default): nothing happens.
    report = _write(off, says_chair, on=False)
    assert off.asset_data.catalog_id == catalogs.NIL and report.catalog == ""
    # A catalog the artist chose is never replaced.
    report = _write(chosen, says_lamp)
    assert chosen.asset_data.catalog_id == ARTISTS and "kept the catalog the artist chose" in report.catalog
    # The artist's own category tag beats a more probable predicted one.
    _write(mine, _result("props/seats/Mine", {"lamp": 0.99, "chair": 0.2}, {"lamp": 0.99}))
    assert {t.name for t in mine.asset_data.tags} == {"chair", "lamp"} and mine.asset_data.catalog_id == CHAIRS

    # A catalog Asset2Vec set itself follows a later answer (the refined one, a re-embed).
    _write(chair, _result("props/seats/Chair", {"lamp": 0.93, "chair": 0.1}, {"lamp": 0.93}))
    assert "chair" not in {t.name for t in chair.asset_data.tags} and chair.asset_data.catalog_id == new.id
    assert catalogs.recorded(chair) == new.id

    # Saved and reopened (Blender's own save): the catalogs and the cats file's lines stay.
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(lib / "props" / "seats.blend"))
    assert bpy.data.objects["Lamp"].asset_data.catalog_id == new.id
    assert bpy.data.objects["Chosen"].asset_data.catalog_id == ARTISTS
    assert cats.read_text().startswith(CATS) and f"{new.id}:Lamp:Lamp" in cats.read_text()


def test_no_catalog_for_a_file_in_no_asset_library(addon, tmp_path):
    bpy = addon
    chair = _asset("Chair")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "loose.blend"))
    report = _write(chair, _result("loose/Chair", {"chair": 0.95}, {"chair": 0.95}))
    assert chair.asset_data.catalog_id == catalogs.NIL and "in no asset library" in report.catalog
    assert not (tmp_path / CATALOG_FILE).exists()  # a new cats file would rename every asset of the folder
    assert not list(Path(tmp_path).rglob(CATALOG_FILE))

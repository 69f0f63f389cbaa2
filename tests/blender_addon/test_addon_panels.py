"""The sidebar panels' real draw() code on real bpy data, recorded with bench/panel_preview.py's layout recorder
(headless Blender has no UI to draw into): before embedding, while embedding, after a failure, after an embed."""

from __future__ import annotations

from bench import panel_preview
from blender_addon import embed_job, session, writeback
from shared import api
from tests.blender_addon.addon_support import configure, support
from tests.blender_addon.blender_helpers import box


def _panels(bpy) -> dict:
    return dict(panel_preview.draw_panels(bpy.context))


def _buttons(rec) -> list[tuple]:
    return [it for it in rec.flat() if it[0] == "button"]


def test_panels_before_while_and_after_a_failed_embed(addon):
    bpy = addon
    url = f"http://127.0.0.1:{support.free_port()}"
    configure(url)
    panels = _panels(bpy)
    assert set(panels) == {"Asset2Vec", "Predicted Tags", "Similar Assets", "Capture"} and panels["Capture"] is None
    main = panels["Asset2Vec"]
    assert "nothing selected" in main.texts() and url in main.texts()
    assert [b[3] for b in _buttons(main)] == ["asset2vec.check_backend", "asset2vec.embed"]
    assert "Embed the asset to see predicted tags" in panels["Predicted Tags"].texts()

    obj = box("Chair")
    bpy.context.view_layer.objects.active = obj
    embed_job.start(obj, embed_job.Options(url=url, size=32, samples=1), first_step=False)
    main = _panels(bpy)["Asset2Vec"]
    assert any(it[0] == "progress" for it in main.flat())
    assert "asset2vec.embed_cancel" in [b[3] for b in _buttons(main)]

    job = embed_job.pump(timeout=60)  # the worker finds no backend: the job fails with a clear message
    assert job.state == embed_job.FAILED and "asset2vec serve" in job.message
    main = _panels(bpy)["Asset2Vec"]
    errors = [it for it in main.flat() if it[0] == "label" and it[2] == "ERROR"]
    assert errors and errors[0][1].startswith("no Asset2Vec backend")
    assert "asset2vec.embed" in [b[3] for b in _buttons(main)]


def test_panels_after_an_embed_show_tags_and_similar_assets(addon):
    bpy = addon
    url = configure("http://127.0.0.1:8765").backend_url
    session.get().set_backend_info(api.ServerInfo(model_id="model-7", device="cpu", generic=True), url)
    obj = box("Chair")
    obj.asset_mark()
    obj.asset_data.tags.new("mine")
    bpy.context.view_layer.objects.active = obj
    result = api.EmbedResult.from_json({
        "name": "Chair", "model_id": "model-7", "shape": [0.0] * 32, "texture": [0.0] * 32, "threshold": 0.5,
        "predicted_tags": {"swivel": 0.91, "mine": 0.7, "legs": 0.2, "sofa": 0.01},
        "proposed_tags": {"swivel": 0.91},  # the backend leaves out "mine": the artist's tag when captured
        "neighbours": {"shape": [{"name": "Stool", "source_file": "/lib/seats.blend", "asset_name": "Stool.001",
                                  "distance": 0.25}],
                       "texture": [{"name": "Table", "source_file": "/lib/tables.blend", "asset_name": "Table",
                                    "distance": 0.5}],
                       "both": []},
    })
    writeback.write_result(obj, result)
    panels = _panels(bpy)
    main = panels["Asset2Vec"]
    assert "Model model-7 (cpu)" in main.texts() and "Generic model: not trained on your library" in main.texts()

    tags = panels["Predicted Tags"]
    assert {"swivel  91%", "mine  70%", "legs  20%", "1 more below 5%"} <= set(tags.texts())
    kinds = [(b[4].tag, b[3]) for b in _buttons(tags) if hasattr(b[4], "tag")]
    # added: reject only; proposed: accept or reject; the artist's own tag ("mine"): no buttons; "sofa": hidden.
    assert kinds == [("swivel", "asset2vec.tag_reject"), ("legs", "asset2vec.tag_accept"),
                     ("legs", "asset2vec.tag_reject")]
    assert "asset2vec.remove_predicted_tags" in [b[3] for b in _buttons(tags)]

    bpy.context.scene.asset2vec.similar_space = "shape"
    similar = _panels(bpy)["Similar Assets"]
    append = [b for b in _buttons(similar) if b[3] == "asset2vec.append_neighbour"]
    assert "Stool" in similar.texts() and "Table" not in similar.texts() and "seats.blend" in similar.texts()
    assert [(b[1], b[4].filepath, b[4].asset_name, b[4].link) for b in append] == [
        ("Append", "/lib/seats.blend", "Stool.001", False)]
    bpy.context.scene.asset2vec.similar_space = "texture"
    bpy.context.scene.asset2vec.link_neighbours = True
    similar = _panels(bpy)["Similar Assets"]
    assert "Table" in similar.texts() and [b[1] for b in _buttons(similar) if b[3] == "asset2vec.append_neighbour"] \
        == ["Link"]


def test_backend_without_tags_explains_how_tags_start(addon):
    from blender_addon.panels import NO_TAGS_LINES

    url = configure("http://127.0.0.1:8765").backend_url
    session.get().set_backend_info(api.ServerInfo(model_id="model-8", device="cpu", tags=[],
                                                  tags_help="No asset has tags yet. Tags start two ways: ..."), url)
    texts = _panels(addon)["Asset2Vec"].texts()
    assert "Model model-8 (cpu)" in texts and all(line in texts for line in NO_TAGS_LINES)
    assert all(len(line) <= 40 for line in NO_TAGS_LINES)  # fits a narrow sidebar
    session.get().set_backend_info(api.ServerInfo(model_id="model-8", device="cpu", tags=["chair"]), url)
    assert not set(NO_TAGS_LINES) & set(_panels(addon)["Asset2Vec"].texts())

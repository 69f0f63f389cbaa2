"""Issue 19 on the served backend (real server on loopback, real SQLite): ``DELETE /v1/assets/{name}`` forgets an
asset (refused without the client header, 404 for unknown names); live neighbour answers never list unsaved embeds
and collapse one object saved in several files into one suggestion with its number of copies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backend.lifecycle.home import LibraryHome
from backend.service.engine import Engine
from backend.service.server import Service
from shared import api
from shared.client import BackendError, Client
from shared.naming import safe_folder_name
from tests.backend.service import service_support as support
from tests.backend.service.test_service_api import wait_job

pytestmark = pytest.mark.slow  # serves the tiny trained run

P = api.API_PREFIX


def _embed(http: httpx.Client, name: str) -> api.EmbedResult:
    """Upload the same pillar views under ``name`` and wait for the answer."""
    r = http.post(
        f"{P}/embed",
        content=support.upload_bundle("pillar", "blue", name=name),
        headers={"Content-Type": "application/zip"},
    )
    assert r.status_code == 202, r.text
    status, _ = wait_job(http, r.json()["job"])
    assert status["status"] == "done", status
    return api.EmbedResult.from_json(http.get(f"{P}/jobs/{r.json()['job']}/result").json())


def _all_neighbours(http: httpx.Client, names: list[str], space: str = "both") -> dict[str, list[api.Neighbour]]:
    out = {}
    for name in names:
        r = http.get(f"{P}/assets/{name}/neighbours", params={"space": space, "k": api.MAX_K})
        assert r.status_code == 200, r.text
        out[name] = api.NeighbourList.from_json(r.json()).neighbours
    return out


def test_unsaved_embeds_are_answered_but_never_neighbours_and_copies_are_one_suggestion(
    http: httpx.Client, engine: Engine
) -> None:
    unsaved = _embed(http, "unsaved/Pillar")
    assert unsaved.neighbours["both"]  # answered: it gets its own neighbours
    first = _embed(http, "props/Pillar")
    copy = _embed(http, "backup/Pillar")  # the same object saved in a second file: the same views, the same code
    # Identical codes (deterministic capture and seeded inversion): only the rules keep them apart.
    assert max(abs(a - b) for a, b in zip(first.shape + first.texture, copy.shape + copy.texture, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(first.shape, unsaved.shape, strict=True)) < 1e-4
    names = engine.catalogue.asset_names()
    for space in api.SPACES:
        answers = _all_neighbours(http, names, space)
        for name, found in answers.items():
            listed = [n.name for n in found]
            assert "unsaved/Pillar" not in listed, (name, space)
            # Never both copies: one suggestion, the closest, counting 2.
            assert not {"props/Pillar", "backup/Pillar"} <= set(listed), (name, space)
        training = [n for n in names if "Pillar" not in n]
        pillar = [n for n in answers[training[0]] if n.name.endswith("/Pillar")]
        assert len(pillar) == 1 and pillar[0].copies == 2, (space, pillar)
        assert all(n.copies == 1 for n in answers[training[0]] if not n.name.endswith("/Pillar"))
    # The embed answer of a copy: its unsaved twin is left out; the other copy (the artist's duplicate) comes first.
    assert "unsaved/Pillar" not in [n.name for n in copy.neighbours["both"]]
    assert [n.name for n in copy.neighbours["both"]][0] == "props/Pillar"


def test_delete_forgets_an_asset_and_refuses_unknown_names(
    http: httpx.Client, service: Service, engine: Engine
) -> None:
    name = sorted(n for n in engine.catalogue.asset_names() if "Pillar" not in n)[0]
    before = engine.catalogue.count("assets")
    # The request policy: a DELETE needs the client header (a web page cannot send it).
    bare = httpx.delete(f"{service.url}{P}/assets/{name}")
    assert bare.status_code == 403 and api.CLIENT_HEADER in bare.json()["detail"]
    assert name in engine.catalogue.asset_names()

    r = http.delete(f"{P}/assets/{name}")
    assert r.status_code == 200, r.text
    gone = api.Forgotten.from_json(r.json())
    assert gone.name == name and gone.assets == before - 1 and "forgot" in gone.message
    assert name not in engine.catalogue.asset_names()
    for found in _all_neighbours(http, engine.catalogue.asset_names()[:3]).values():
        assert name not in [n.name for n in found]  # the live index was rebuilt without it
    assert http.get(f"{P}/assets/{name}/neighbours").status_code == 404

    again = http.delete(f"{P}/assets/{name}")
    assert again.status_code == 404 and f"no asset named {name!r}" in again.json()["detail"]
    typo = http.delete(f"{P}/assets/{name[:-1]}X")
    assert typo.status_code == 404 and "did you mean" in typo.json()["detail"]
    assert engine.catalogue.count("assets") == before - 1  # a refusal removes nothing

    # The typed client: the same call, the same clear refusal.
    other = sorted(n for n in engine.catalogue.asset_names() if "Pillar" not in n)[0]
    assert Client(service.url).delete_asset(other).name == other
    with pytest.raises(BackendError, match="no asset named") as e:
        Client(service.url).delete_asset(other)
    assert e.value.status == 404
    # A catalogue name with folders (sent URL-encoded): the copy goes, the other one is a single suggestion again.
    assert Client(service.url).delete_asset("backup/Pillar").name == "backup/Pillar"
    found = _all_neighbours(http, [other_name := sorted(engine.catalogue.asset_names())[0]])[other_name]
    assert [n.copies for n in found if n.name.endswith("/Pillar")] == [1]


def test_delete_in_a_library_home_removes_the_stored_views(tmp_path: Path) -> None:
    home = LibraryHome.at(tmp_path / "home")
    engine = Engine.open_home(home, device="cpu", instant=False)
    svc = Service(engine, port=0, advertise=False).start_in_thread()
    try:
        name = engine.catalogue.asset_names()[0]
        views = home.bundles / safe_folder_name(name)
        other = home.bundles / safe_folder_name(engine.catalogue.asset_names()[1])
        for folder in (views, other):  # what an embed or `index` stores: the asset's 18 views
            folder.mkdir(parents=True)
            (folder / "transforms.json").write_text("{}")
        assert Client(svc.url).delete_asset(name).name == name
        assert not views.exists() and other.is_dir()  # only the forgotten asset's views go
        assert name not in engine.catalogue.asset_names()
    finally:
        svc.stop()
        engine.close()

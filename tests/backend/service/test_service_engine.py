"""The Engine's set-up: catalogue import, tag model reuse, refusing a catalogue of another model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.library.catalogue import Catalogue
from backend.library.errors import LibraryError
from backend.service.engine import CATALOGUE_FILE, TAG_MODEL_FILE, Engine
from shared.bundle import AssetInfo
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


def test_open_imports_the_run_once_and_reuses_the_tag_model(tmp_path: Path) -> None:
    run = support.fresh_run_copy(tmp_path / "run")
    first = Engine.open(run)
    assert first.info().assets == len(support.TRAIN_ITEMS)
    assert (run / CATALOGUE_FILE).is_file() and (run / TAG_MODEL_FILE).is_file()
    stamp = (run / TAG_MODEL_FILE).stat().st_mtime_ns
    first.close()
    again = Engine.open(run)
    assert again.info().assets == len(support.TRAIN_ITEMS)  # not imported twice
    assert (run / TAG_MODEL_FILE).stat().st_mtime_ns == stamp  # loaded, not retrained
    assert again.tag_model is not None and set(again.tag_model.tags) == {"ball", "crate"}
    again.close()


def test_catalogue_of_another_model_is_refused(tmp_path: Path) -> None:
    run = support.fresh_run_copy(tmp_path / "run")
    other = tmp_path / "other.sqlite"
    with Catalogue(other) as cat:
        aid = cat.upsert_asset(AssetInfo(name="somebody_elses_chair"))
        cat.set_codes("another-model", {aid: (np.zeros(32), np.ones(32), None)})
    with pytest.raises(LibraryError, match="not from model"):
        Engine.open(run, catalogue_path=other)


def test_build_result_mirrors_every_index_summary_field() -> None:
    """api.BuildResult is the wire copy of lifecycle's IndexSummary: a field added there must reach the client."""
    import dataclasses

    from backend.lifecycle.index import IndexSummary
    from shared import api

    wire = {f.name for f in dataclasses.fields(api.BuildResult)}
    missing = [f.name for f in dataclasses.fields(IndexSummary) if f.name not in wire]
    assert not missing, f"api.BuildResult lacks IndexSummary fields {missing}"
    summary = IndexSummary(home="", model_id="m2", pruned=["gone"], moved={"old": "new"})
    result = api.BuildResult.from_json({**summary.as_dict(), "serving": "m2"})
    assert result.pruned == ["gone"] and result.moved == {"old": "new"}

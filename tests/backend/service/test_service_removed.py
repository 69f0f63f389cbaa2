"""A catalogue changed by another process (``asset2vec catalogue remove``, ``index`` pruning) while the backend
serves: neighbour answers skip the removed assets instead of failing (issue 19's hygiene must not break serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.library.catalogue import Catalogue
from backend.service.engine import Engine
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # serves the tiny trained run


def test_neighbours_skip_assets_removed_by_another_process(tmp_path: Path) -> None:
    engine = Engine.open(support.fresh_run_copy(tmp_path / "run"), invert_steps=support.INVERT_STEPS)
    try:
        names = engine.catalogue.codes(engine.model_id).names
        first = engine.neighbours(names[0], "both", k=3).neighbours
        gone = first[0].name
        with Catalogue(tmp_path / "run" / "catalogue.sqlite") as other:  # another process's connection
            other.remove_assets([gone])
        after = engine.neighbours(names[0], "both", k=3).neighbours  # the stale index still finds it
        assert gone not in [n.name for n in after] and after
        again = engine.neighbours(names[0], "both", k=3).neighbours  # rebuilt without it
        assert gone not in [n.name for n in again] and len(again) == 3
    finally:
        engine.close()

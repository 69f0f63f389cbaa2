"""``asset2vec tags train / report / predict`` with calibrated write thresholds and exclusive groups (issue 17),
and a planted pickle at the tag model path (issue 18), on the tiny real run of the service tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from backend.cli import main
from backend.library.tags import TAG_MODEL_FILE, TagModel
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or reuses the tiny trained run)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_report_predict_with_thresholds_and_groups(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = support.fresh_run_copy(tmp_path / "run")
    marker = tmp_path / "marker"
    (run_dir / TAG_MODEL_FILE).write_bytes(pickle.dumps(_Payload(marker)))  # planted: never runs
    code, out, err = cli(capsys, "tags", "report", "--run", run_dir)
    assert code != 0 and "retrain the tags: asset2vec tags train" in err + out and not marker.exists()
    groups = tmp_path / "groups.csv"
    groups.write_text("ball,crate\n")
    code, out, _ = cli(capsys, "tags", "train", "--run", run_dir, "--target-precision", "0.8", "--exclusive", groups,
                       "--json")
    data = json.loads(out)
    assert code == 0 and data["target_precision"] == 0.8 and ["ball", "crate"] in data["exclusive_groups"]
    assert data["declared_groups"] == [["ball", "crate"]] and set(data["thresholds"]) == set(data["trained"])
    assert not marker.exists()
    code, out, _ = cli(capsys, "tags", "report", "--run", run_dir)
    assert code == 0 and "target precision 0.80" in out and "ball / crate" in out
    assert ("suggest only" in out) or (">= " in out)
    code, out, _ = cli(capsys, "tags", "predict", "--run", run_dir, "--json")
    pred = json.loads(out)
    assert code == 0 and all({"write", "suggest", "proposed"} <= set(v) for v in pred.values())
    assert all(not {"ball", "crate"} <= set(v["write"]) for v in pred.values())
    # a later training keeps the target and the declared groups unless given anew
    code, out, _ = cli(capsys, "tags", "train", "--run", run_dir, "--json")
    again = TagModel.load(run_dir / TAG_MODEL_FILE)
    assert code == 0 and again.target_precision == 0.8 and again.declared_groups == [["ball", "crate"]]
    code, _, err = cli(capsys, "tags", "train", "--run", run_dir, "--target-precision", "2")
    assert code != 0 and "--target-precision" in err

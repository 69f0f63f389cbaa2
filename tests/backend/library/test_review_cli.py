"""``asset2vec tags review`` on the tiny real run of the service tests, answers piped into a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import main
from backend.library.catalogue import Catalogue, import_run
from backend.library.tags import TagModel
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run); runs the CLI in subprocesses

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return support.fresh_run_copy(tmp_path / "run")


def _review(run_dir: Path, answers: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", "tags", "review", "--run", str(run_dir), *extra],
                          input=answers, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_review_piped_answers_are_stored_and_retrain(run_dir: Path) -> None:
    # y: accept the first question; a typo is asked again; n: reject the second; s: skip the third; then end of input.
    done = _review(run_dir, "y\nmaybe\nn\ns\n", "-n", "5")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "no tag model yet: training one" in done.stderr
    questions = [line for line in out.splitlines() if line.startswith("[")]
    assert len(questions) == 4 and questions[0].startswith("[1/5] does ") and "predicted" in questions[0]
    assert "'maybe': answer y, n, s or q" in out
    assert "answered 2 (1 accepted, 1 rejected), skipped 1" in out
    with Catalogue(run_dir / "catalogue.sqlite") as cat:
        answers = cat.reviews()
        assert [a["accepted"] for a in sorted(answers, key=lambda a: not a["accepted"])] == [True, False]
        yes = next(a for a in answers if a["accepted"])
        no = next(a for a in answers if not a["accepted"])
        assert yes["tag"] in cat.tags_of(yes["name"])["artist"]  # stored as an artist tag
        assert no["tag"] not in cat.tags_of(no["name"])["artist"]
        model_id = cat.active_model()
        p_yes = cat.tags_of(yes["name"], model_id)["probabilities"][yes["tag"]]
        p_no = cat.tags_of(no["name"], model_id)["probabilities"][no["tag"]]
    # "accepted 'crate' for ball_red; retrained: probability 12% -> 80%": the answer moved the prediction
    moved = [line for line in out.splitlines() if "retrained: probability" in line]
    assert len(moved) == 2 and moved[0].strip().startswith("accepted") and moved[1].strip().startswith("rejected")
    before_yes = float(moved[0].split("probability ")[1].split("%")[0]) / 100
    before_no = float(moved[1].split("probability ")[1].split("%")[0]) / 100
    # The rejected pair may have been a negative already; the printed probabilities are whole percents.
    assert p_yes > before_yes and p_no <= before_no + 0.005
    saved = TagModel.load(run_dir / "tags.joblib", expect_model=model_id)  # saved after the last answer
    assert saved.report[yes["tag"]]["cross_validated"] is True  # only the answered tag, retrained and calibrated

    # The next session does not ask the answered pairs again; --json keeps stdout for the summary.
    done = _review(run_dir, "q\n", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["answered"] == [] and summary["end"] == "stopped"
    asked = [line for line in done.stderr.splitlines() if line.startswith("[1/10]")][0]
    assert f"have the tag {yes['tag']!r}" not in asked or yes["name"] not in asked


def test_clear_messages_without_tags(run_dir: Path, tmp_path: Path, capsys) -> None:
    from backend.training.run import load_run

    empty = tmp_path / "untagged.sqlite"
    with Catalogue(empty) as cat:
        import_run(cat, load_run(run_dir))
        for name in cat.asset_names():
            cat.set_artist_tags(name, [])
    code = main(["tags", "review", "--run", str(run_dir), "--catalogue", str(empty)])
    err = capsys.readouterr().err
    assert code != 0 and "No asset has tags yet" in err and "Traceback" not in err
    code = main(["tags", "review", "--run", str(run_dir), "-n", "0"])
    assert code != 0 and "-n must be at least 1" in capsys.readouterr().err

"""bench/tags.py's bookkeeping: instant-vs-refined flips, committed commands without machine folders."""

from __future__ import annotations

import argparse

import pytest

from bench import tags as T


def test_flips_count_what_refinement_removes_and_adds_and_whether_it_was_right() -> None:
    instant = [{"chair": 0.9, "office": 0.95}, {"lamp": 0.9}]
    refined = [{"chair": 0.92}, {"lamp": 0.91, "floor": 0.93}]
    truth = [{"chair"}, {"lamp", "floor"}]
    assert T._flips(instant, refined, truth) == {"removed_after_refine": 1, "removed_that_were_right": 0,
                                                 "added_after_refine": 1, "added_that_are_right": 1}
    score = T._score(refined, truth, [{"chair", "lamp", "floor"}] * 2, [[["lamp", "floor"]]] * 2)
    assert score["precision"] == 1.0 and score["exclusive_violations"] == 1


def test_the_committed_command_names_no_folder_and_options_go_per_library() -> None:
    argv = ["--bundles", "/tmp/x/b", "--run", "/tmp/x/r", "--label", "sample", "--bundles", "/data/s", "--run",
            "/data/t", "--label", "scopia", "--answers", "5"]
    assert " ".join(T.portable_argv(argv)) == ("--bundles SAMPLE_BUNDLES --run SAMPLE_RUN --label sample --bundles "
                                               "SCOPIA_BUNDLES --run SCOPIA_RUN --label scopia --answers 5")
    ap = argparse.ArgumentParser()
    assert T._per_library(ap, "--answers", None, 2, 0) == [0, 0]
    assert T._per_library(ap, "--answers", [3], 2, 0) == [3, 3]
    assert T._per_library(ap, "--answers", [3, 1], 2, 0) == [3, 1]
    with pytest.raises(SystemExit):
        T._per_library(ap, "--answers", [3, 1, 2], 2, 0)

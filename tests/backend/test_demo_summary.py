"""The demo's tag step prints a short summary a newcomer can read, with written tags as its examples."""

from __future__ import annotations

from backend.commands.demo import tag_summary


def _asset(write: dict[str, float] | None = None, suggest: dict[str, float] | None = None) -> dict:
    """One asset of `asset2vec tags predict --json`'s output."""
    return {
        "artist": ["x"],
        "proposed": {**(write or {}), **(suggest or {})},
        "write": write or {},
        "suggest": suggest or {},
    }


def test_summary_is_short_and_shows_only_written_tags_as_examples() -> None:
    predictions = {f"chairs/Chair_{i:02d}": _asset() for i in range(70)}
    predictions["families/Table_Param_v3"] = _asset(suggest={"chair": 0.65})  # a one-off guess under the threshold
    predictions["sofas/Sofa_02"] = _asset(write={"sofa": 0.97, "fabric": 0.91})
    predictions["lamps/Lamp_01"] = _asset(write={"lamp": 0.88}, suggest={"floor": 0.4})
    predictions["lamps/Lamp_02"] = _asset(write={"lamp": 0.81})
    predictions["lamps/Lamp_03"] = _asset(write={"lamp": 0.80})
    lines = tag_summary(predictions, examples=3)
    text = "\n".join(lines)
    assert len(lines) <= 6, text  # not one line per asset
    assert lines[0] == (
        "   75 assets: 5 tag(s) written on 4 (at each tag's calibrated threshold), 2 suggested for "
        "review on 2, nothing new for 70"
    )
    assert lines[1] == "   written: lamp x3, fabric x1, sofa x1"
    # The most probable written tags are the examples; the suggestion is never shown as one.
    assert "Sofa_02" in lines[2] and lines[2].lstrip().startswith("e.g.") and "+ sofa (0.97), fabric (0.91)" in lines[2]
    assert "Lamp_01" in lines[3] and "Lamp_02" in lines[4] and "Lamp_03" not in text
    assert "Table_Param" not in text and "chair" not in text and "Chair_00" not in text


def test_summary_without_written_tags_says_so() -> None:
    lines = tag_summary({"a": _asset(suggest={"chair": 0.6}), "b": _asset()})
    assert lines[0].startswith("   2 assets: 0 tag(s) written on 0") and "1 suggested for review on 1" in lines[0]
    assert "no tag is sure enough to be written" in lines[1] and "tags review" in lines[1] and len(lines) == 2

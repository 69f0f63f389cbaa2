"""The visual-class rules of the quality benchmark: names a furniture catalogue really uses."""

from __future__ import annotations

import pytest

from bench.visual_classes import MIN_MEMBERS, visual_class, visual_classes


@pytest.mark.parametrize(("name", "cls"), [
    ("Chair", "chair/stool"), ("Modern armchair", "chair/stool"), ("Bar chair", "chair/stool"), ("Stool", "chair/stool"),
    ("Coffee table", "table/desk"), ("Bedside table", "table/desk"), ("Wooden desk", "table/desk"),
    ("Desk lamp", "lamp"), ("Pendant lamp", "lamp"), ("Street light", "lamp"),
    ("Convertible sofa BZ", "sofa"), ("Futon", "sofa"),
    ("Bunk bed", "bed"), ("Crib", "bed"), ("Loft bed 140x190", "bed"),
    ("Double French window 3 panes", "window"), ("Garage door", "door"), ("Sliding doors", "door"),
    ("Glass door cabinet", "storage"), ("Bookcase", "storage"), ("Shelves", "storage"),
    ("Palm tree", "plant"), ("Flowers", "plant"),
    ("Seat Leon", "vehicle"), ("City bus", "vehicle"), ("Smart car", "vehicle"),
    ("Square type G plug", "plug/switch"), ("Wall dimmer switch", "plug/switch"),
    ("Teapot", "tableware"), ("Bowl with fruits", "tableware"),
    ("Mannequin female", "person"),
    ("Aquarium", None), ("Cardboard box", None), ("Carpet", None),
])
def test_rules(name: str, cls: str | None) -> None:
    assert visual_class(name) == cls


def test_small_classes_are_left_out() -> None:
    names = ["Chair"] * MIN_MEMBERS + ["Lamp"] * (MIN_MEMBERS - 1) + ["Aquarium"]
    out = visual_classes(names)
    assert out[:MIN_MEMBERS] == ["chair/stool"] * MIN_MEMBERS
    assert out[MIN_MEMBERS:] == [None] * MIN_MEMBERS

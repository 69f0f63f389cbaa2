"""The camera rig: 3 rings x 6 views, rigid look-at cameras, the unit sphere always in frame."""

from __future__ import annotations

import math

import pytest

from shared import rig


def test_rig_layout():
    views = rig.views()
    assert len(views) == rig.NUM_VIEWS == 18
    assert [v.index for v in views] == list(range(18))
    assert [sum(v.ring == r for v in views) for r in range(3)] == [6, 6, 6]
    assert len({round(v.azimuth_deg, 6) for v in views}) == 18  # staggered rings: 18 distinct azimuths
    assert all(0 <= i < 18 for i in rig.HELD_OUT_VIEWS)
    assert {views[i].ring for i in rig.HELD_OUT_VIEWS} == {0, 2}


@pytest.mark.parametrize("view", rig.views(), ids=lambda v: f"view{v.index}")
def test_camera_is_rigid_and_looks_at_the_origin(view):
    m = view.camera_to_world()
    assert m[3] == [0.0, 0.0, 0.0, 1.0]
    for a in range(3):
        for b in range(3):
            dot = sum(m[k][a] * m[k][b] for k in range(3))
            assert dot == pytest.approx(1.0 if a == b else 0.0, abs=1e-9)
    det = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
           + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    assert det == pytest.approx(1.0)
    assert m[2][0] == pytest.approx(0.0, abs=1e-12)  # image x axis stays horizontal: no roll
    pos = [m[i][3] for i in range(3)]
    assert math.dist(pos, (0, 0, 0)) == pytest.approx(rig.camera_distance())
    assert math.degrees(math.asin(pos[2] / math.dist(pos, (0, 0, 0)))) == pytest.approx(view.elevation_deg)
    u, v, depth = rig.project((0.0, 0.0, 0.0), m, 64)
    assert (u, v) == pytest.approx((32.0, 32.0)) and depth == pytest.approx(rig.camera_distance())
    # World up projects upwards in the image (v decreases).
    assert rig.project((0.0, 0.0, 0.5), m, 64)[1] < 32.0


def test_unit_sphere_fits_every_view_with_margin():
    size = 128
    pts = [(math.cos(a) * math.cos(b), math.sin(a) * math.cos(b), math.sin(b))
           for a in [i * math.pi / 12 for i in range(24)] for b in [j * math.pi / 12 - math.pi / 2 for j in range(13)]]
    for view in rig.views():
        m = view.camera_to_world()
        uv = [rig.project(p, m, size)[:2] for p in pts]
        assert all(0 < u < size and 0 < v < size for u, v in uv)
        # ... and nearly fills it: the margin is only FRAMING_MARGIN.
        assert max(max(abs(u - 64), abs(v - 64)) for u, v in uv) > 0.85 * 64


def test_intrinsics_and_distance():
    k = rig.intrinsics(100)
    assert k["w"] == k["h"] == 100 and k["cx"] == k["cy"] == 50.0
    assert k["fl_x"] == pytest.approx(50.0 / math.tan(math.radians(rig.FOV_DEG / 2)))
    assert rig.camera_distance(2.0) == pytest.approx(2 * rig.camera_distance(1.0))
    with pytest.raises(ValueError, match="positive"):
        rig.camera_distance(0.0)
    assert len(rig.orbit(8)) == 8

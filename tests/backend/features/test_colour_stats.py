"""The views' colour statistics: they see colour, spread, highlights and busy surfaces, and not the shape."""

from __future__ import annotations

import numpy as np

from backend.features.colour_stats import COLOUR_STAT_NAMES, colour_statistics_of


def views(colour: tuple[float, float, float], shape: str, highlight: float = 0.0, stripes: bool = False) -> np.ndarray:
    """18 straight-alpha views ``[18, 32, 32, 4]`` of one flat-coloured object: a disc or a wide box."""
    yy, xx = np.mgrid[:32, :32]
    mask = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100) if shape == "disc" else ((abs(yy - 16) < 5) & (abs(xx - 16) < 14))
    img = np.zeros((32, 32, 4), np.float32)
    img[..., :3] = colour
    if stripes:
        img[xx % 2 == 0, :3] *= 0.5
    if highlight:  # a white patch on part of the object
        spot = mask & (xx < 16) & (yy < 16 + 2)
        img[spot, :3] = img[spot, :3] * (1 - highlight) + highlight
    img[..., 3] = mask
    return np.repeat(img[None], 18, axis=0)


def stats(*args, **kw) -> dict[str, float]:
    return dict(zip(COLOUR_STAT_NAMES, colour_statistics_of(views(*args, **kw)), strict=True))


def test_the_same_surface_on_two_shapes_gives_the_same_statistics_and_another_colour_does_not() -> None:
    red_disc, red_box = colour_statistics_of(views((0.8, 0.1, 0.1), "disc")), colour_statistics_of(views((0.8, 0.1, 0.1), "box"))
    blue_disc = colour_statistics_of(views((0.1, 0.1, 0.8), "disc"))
    assert np.abs(red_disc - red_box).max() < 1e-4
    assert np.abs(red_disc - blue_disc).max() > 0.5
    assert stats((0.8, 0.1, 0.1), "disc")["mean_r"] > 0.79


def test_highlights_and_busy_surfaces_show() -> None:
    plain, shiny = stats((0.3, 0.3, 0.3), "disc"), stats((0.3, 0.3, 0.3), "disc", highlight=1.0)
    assert plain["highlight_fraction"] == 0 and shiny["highlight_fraction"] > 0.1
    assert stats((0.6, 0.6, 0.6), "box", stripes=True)["local_contrast"] > 0.1 > plain["local_contrast"]


def test_an_asset_seen_in_no_view_gives_zeros_not_nan() -> None:
    empty = np.zeros((18, 8, 8, 4), np.float32)
    out = colour_statistics_of(empty)
    assert out.shape == (len(COLOUR_STAT_NAMES),) and not out.any()

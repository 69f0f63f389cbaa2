"""The capture rig: 3 rings x 6 views = 18 cameras, one definition for every part of Asset2Vec.

Conventions
-----------
* World space is Blender's: Z up, metres.
* Every asset is normalised to its **bounding sphere** before capture: the sphere's centre goes
  to the origin and its radius to 1. The rig, the view bundle and the NeRF all live in that unit
  space; the bundle records centre and radius so world coordinates can be recovered.
* Cameras follow the OpenGL/Blender/NeRF convention: the camera looks down its local -Z axis,
  +Y is up in the image, +X is right. ``camera_to_world`` is the 4x4 matrix that maps camera
  coordinates to (normalised) world coordinates, exactly what ``transforms.json`` stores.

Nothing here imports bpy, torch or numpy: the add-on (inside Blender) and the backend share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RIG_NAME = "asset2vec-3x6-v1"

#: Elevation of each ring above the asset's equator, in degrees. Furniture is seen mostly from
#: standing height, so the rings look slightly, moderately and steeply down.
RING_ELEVATIONS_DEG: tuple[float, ...] = (10.0, 35.0, 60.0)
#: Azimuth offset of each ring: the rings are staggered so 18 views cover 18 distinct azimuths.
RING_AZIMUTH_OFFSETS_DEG: tuple[float, ...] = (0.0, 20.0, 40.0)
VIEWS_PER_RING = 6
NUM_VIEWS = len(RING_ELEVATIONS_DEG) * VIEWS_PER_RING

#: Horizontal = vertical field of view (square images), in degrees.
FOV_DEG = 40.0
#: Extra room around the bounding sphere so its silhouette never touches the image border.
FRAMING_MARGIN = 1.05
#: Views held out of training for validation (one from the low and one from the high ring).
HELD_OUT_VIEWS: tuple[int, ...] = (3, 14)


def camera_distance(radius: float = 1.0, fov_deg: float = FOV_DEG, margin: float = FRAMING_MARGIN) -> float:
    """Distance from the sphere's centre at which a sphere of ``radius`` fills the view.

    A sphere of radius r seen from distance d subtends a half-angle asin(r / d); it fits a
    field of view of half-angle fov/2 when d >= r / sin(fov/2).
    """
    if radius <= 0:
        raise ValueError(f"bounding-sphere radius must be positive, got {radius}")
    return margin * radius / math.sin(math.radians(fov_deg) / 2.0)


@dataclass(frozen=True)
class RigView:
    """One camera of the rig."""

    index: int
    ring: int
    elevation_deg: float
    azimuth_deg: float

    def position(self, radius: float = 1.0) -> tuple[float, float, float]:
        """Camera centre in normalised (or, with ``radius``, scaled) asset space."""
        d = camera_distance(radius)
        el, az = math.radians(self.elevation_deg), math.radians(self.azimuth_deg)
        return (d * math.cos(el) * math.cos(az), d * math.cos(el) * math.sin(az), d * math.sin(el))

    def camera_to_world(self, radius: float = 1.0) -> list[list[float]]:
        """4x4 camera-to-world matrix (row-major lists) looking at the origin, Z up."""
        px, py, pz = self.position(radius)
        # Camera -Z points at the origin, so the camera's +Z axis is the unit position vector.
        n = math.sqrt(px * px + py * py + pz * pz)
        zx, zy, zz = px / n, py / n, pz / n
        # +X is horizontal: world up (0, 0, 1) x z, normalised.
        xx, xy, xz = -zy, zx, 0.0
        m = math.sqrt(xx * xx + xy * xy) or 1.0
        xx, xy = xx / m, xy / m
        # +Y = z x x completes the right-handed frame.
        yx, yy, yz = zy * xz - zz * xy, zz * xx - zx * xz, zx * xy - zy * xx
        return [
            [xx, yx, zx, px],
            [xy, yy, zy, py],
            [xz, yz, zz, pz],
            [0.0, 0.0, 0.0, 1.0],
        ]


def views() -> list[RigView]:
    """The 18 rig views, ring by ring, in bundle order."""
    out = []
    for ring, (el, off) in enumerate(zip(RING_ELEVATIONS_DEG, RING_AZIMUTH_OFFSETS_DEG, strict=True)):
        for k in range(VIEWS_PER_RING):
            az = (off + k * 360.0 / VIEWS_PER_RING) % 360.0
            out.append(RigView(index=len(out), ring=ring, elevation_deg=el, azimuth_deg=az))
    return out


def focal_length_px(image_size: int, fov_deg: float = FOV_DEG) -> float:
    """Pinhole focal length in pixels for a square image of ``image_size`` pixels."""
    return 0.5 * image_size / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics(image_size: int) -> dict[str, float]:
    """Intrinsics in the NeRF ``transforms.json`` convention (principal point at the centre)."""
    f = focal_length_px(image_size)
    return {
        "camera_angle_x": math.radians(FOV_DEG),
        "fl_x": f,
        "fl_y": f,
        "cx": image_size / 2.0,
        "cy": image_size / 2.0,
        "w": image_size,
        "h": image_size,
    }


def orbit(n: int, elevation_deg: float = 25.0) -> list[RigView]:
    """``n`` views evenly around one ring, for turntable renders of any code."""
    return [RigView(index=i, ring=0, elevation_deg=elevation_deg, azimuth_deg=360.0 * i / n) for i in range(n)]


def project(
    point: tuple[float, float, float], camera_to_world: list[list[float]], image_size: int
) -> tuple[float, float, float]:
    """Project a point (normalised asset space) to pixel coordinates ``(u, v, depth)``.

    ``u`` grows to the right and ``v`` downwards from the top-left corner, as in image arrays.
    """
    c2w = camera_to_world
    # world -> camera: R^T (p - t)
    d = [point[i] - c2w[i][3] for i in range(3)]
    xc = sum(c2w[i][0] * d[i] for i in range(3))
    yc = sum(c2w[i][1] * d[i] for i in range(3))
    zc = sum(c2w[i][2] * d[i] for i in range(3))
    depth = -zc
    f = focal_length_px(image_size)
    u = image_size / 2.0 + f * xc / depth
    v = image_size / 2.0 - f * yc / depth
    return u, v, depth

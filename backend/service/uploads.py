"""An uploaded view bundle: validated once where it enters, held in memory, written once where it lives.

``POST /embed`` hands the upload's bytes to :func:`parse_upload`: :func:`shared.bundle.parse_archive` reads only
the members the protocol names (size-capped) and checks every PNG header, then every view is fully decoded here
(a PNG with a valid header and garbage data is refused before anything is stored); the resulting :class:`Upload` is a :class:`~shared.bundle.Bundle`
whose images are served from memory, so the model reads the views without a temporary file. Serving a
library home, :func:`store_bundle` writes it once into ``HOME/bundles/<safe name>/`` (the next model
trains on it, a model switch fits it again from there).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from backend.lifecycle.home import store_bundle_files
from shared.bundle import Bundle, BundleError, parse_archive
from shared.naming import safe_folder_name

#: Longest bundle folder name stored (file systems allow 255 bytes; ".incoming-" is prepended while writing).
MAX_FOLDER_BYTES = 240


@dataclass
class Upload(Bundle):
    """A validated bundle whose PNGs are in memory (``images``: relative path -> bytes)."""

    images: dict[str, bytes] = field(default_factory=dict, repr=False)

    def image_bytes(self, index: int) -> bytes:
        return self.images[self.frames[index].file_path]


def parse_upload(data: bytes) -> Upload:
    """Validate an uploaded ``.zip`` bundle (raises :class:`shared.bundle.BundleError` naming the problem)."""
    bundle, images = parse_archive(data)
    folder = safe_folder_name(bundle.asset.name)
    if len(folder.encode()) > MAX_FOLDER_BYTES:
        raise BundleError(f"archive: the asset name is {len(bundle.asset.name)} characters long, too long to store "
                          f"its views (a catalogue name is '<file>/<asset>' and fits in {MAX_FOLDER_BYTES} bytes)")
    for i, frame in enumerate(bundle.frames):
        decode_view(images[frame.file_path], bundle.image_size, f"frame {i} image {frame.file_path}")
    return Upload(image_size=bundle.image_size, frames=bundle.frames, asset=bundle.asset, root=None,
                  rig_name=bundle.rig_name, images=images)


def decode_view(png: bytes, size: int, what: str) -> None:
    """Decode one view completely (every pixel); :class:`BundleError` unless it is a ``size``-square RGBA image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
                if im.size != (size, size):  # checked before decoding: pixels are only allocated at the right size
                    raise BundleError(f"archive: {what} is {im.size[0]}x{im.size[1]}, expected {size}x{size}")
                im.load()
                mode = im.mode
    except BundleError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for damaged data; all mean "not a view"
        raise BundleError(f"archive: {what} is not a readable PNG ({type(e).__name__}: {str(e)[:120]})") from None
    if mode != "RGBA":
        raise BundleError(f"archive: {what} decodes as {mode}, expected 8-bit RGBA")


def store_bundle(bundle: Bundle, bundles_dir: Path) -> Path:
    """Write ``bundle`` into ``bundles_dir/<safe name>/`` (``transforms.json`` + views), replacing an older copy
    atomically (a reader sees the old folder or the new one). Returns the folder."""
    images = {f.file_path: bundle.image_bytes(i) for i, f in enumerate(bundle.frames)}  # validated relative paths
    return store_bundle_files(bundles_dir, bundle.asset.name, bundle.transforms(), images)

"""Asset thumbnails: the stored view, or rendered once by the served decoder and stored."""

from __future__ import annotations

import io

import numpy as np

from backend.library.errors import CatalogueBusy, LibraryError
from shared import api, rig

from .errors import NotFound
from .served import ServedModel

THUMBNAIL_SIZE = 96


class Thumbnails:
    """PNG thumbnails of catalogued assets (answered from request threads; rendering holds the decoder lock)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served

    def thumbnail(self, name: str) -> bytes:
        """The asset's PNG thumbnail: the stored view, or rendered once by the decoder and stored."""
        catalogue = self.served.catalogue
        try:
            png = catalogue.thumbnail(name)
        except CatalogueBusy:
            raise  # the service answers 503 + Retry-After: retrying helps, not another request
        except LibraryError as e:
            raise NotFound(str(e)) from None
        if png:
            return png
        state = self.served.state
        table = self.served.codes(state)
        try:
            row = table.index_of(name)
        except CatalogueBusy:
            raise  # the service answers 503 + Retry-After: retrying helps, not another request
        except LibraryError as e:
            raise NotFound(f"{name!r} has no thumbnail and no code of model {state.model_id} to render one") from e
        with self.served.decoder_lock:
            rgba = state.run.render(
                table.shape[row : row + 1], table.texture[row : row + 1], views=[rig.views()[api.THUMBNAIL_VIEW]],
                image_size=THUMBNAIL_SIZE,
            )[0, 0]
        png = to_png(rgba)
        catalogue.set_thumbnail(name, png)
        return png


def to_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of a straight RGBA float image ``[H, W, 4]`` in [0, 1]."""
    from PIL import Image

    arr = np.clip(np.round(np.asarray(rgba, np.float32) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, format="PNG")
    return buf.getvalue()

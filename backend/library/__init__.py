"""Library intelligence on top of the codes: catalogue (SQLite), tags, similarity, exploration, style grids.

Everything here works on plain arrays of codes (``shape [N, 32]``, ``texture [N, 32]``) and the stored appearance
features; only :mod:`backend.library.style`, :mod:`backend.library.explore`'s renders and
:mod:`backend.library.image_query`'s decoder fit (its fallback when the library has no appearance features) need a
decoder, and they accept any object with ``render(shape, texture, views, image_size)`` (a
:class:`backend.training.run.TrainedRun`).
"""

from .errors import LibraryError

__all__ = ["LibraryError"]

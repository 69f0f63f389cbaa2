"""Headless (no UI) Blender workers: build the sample library, import OBJ/glTF folders.

These functions reset Blender's session (``read_factory_settings``) and save new .blend files, so
they run in the ``asset2vec`` CLI or a worker process, never inside an artist's open session.

The backend reaches the Blender side only through this package (see tests/test_layers.py), so its errors
are importable from here too.
"""

from ..errors import AddonError, BlendFileError, CaptureError

__all__ = ["AddonError", "BlendFileError", "CaptureError"]

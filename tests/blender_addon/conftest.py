"""Fixtures shared by the add-on tests: the registered add-on; the live backend (a real Engine on the tiny
trained run of ``tests/backend/service/service_support.py``, served over HTTP on 127.0.0.1 from a thread).

``engine`` and ``backend`` come from tests/conftest.py (module-scoped: each test module gets its own catalogue).
A module that needs another kind of backend defines its own fixture of the same name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def addon(blender: Any) -> Iterator[Any]:
    """``bpy`` with the add-on registered (and unregistered after the test)."""
    import blender_addon

    blender_addon.register()
    yield blender
    blender_addon.unregister()

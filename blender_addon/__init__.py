"""Asset2Vec for Blender: capture assets in 18 views, embed them with the Asset2Vec backend,
write predicted tags and similar-asset suggestions back into the .blend.

The add-on never imports torch. Modules that need ``bpy`` import it at module level (they only run
inside Blender or the PyPI ``bpy`` module); plain functions live beside thin operators.
"""

import importlib

#: Submodules with Blender classes; each exposes ``classes`` (registered in order) and may
#: define ``register()``/``unregister()`` hooks for extra set-up (properties, handlers). The session
#: (running tasks, status lines, thumbnails) opens first and closes last; the preferences come before the scene
#: settings, whose view size reads them (and takes over an older file's value at register).
_UI_MODULES = ("session", "preferences", "properties", "operators", "panels", "library_ui", "review_ui", "bulk_ui")


def _modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in _UI_MODULES]


def register() -> None:
    import bpy

    for mod in _modules():
        for cls in getattr(mod, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(mod, "register"):
            mod.register()


def unregister() -> None:
    import bpy

    for mod in reversed(_modules()):
        if hasattr(mod, "unregister"):
            mod.unregister()
        for cls in reversed(getattr(mod, "classes", ())):
            bpy.utils.unregister_class(cls)

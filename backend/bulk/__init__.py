"""Bulk-tag library folders: the driver side (scan, journal, worker pool, progress, report).

The per-file work (open the .blend, capture, embed, write back, save safely) runs in headless
Blender workers: :mod:`blender_addon.headless.bulk`. Nothing here imports bpy or torch.
"""

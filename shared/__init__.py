"""Asset2Vec's protocol, shared by the Blender add-on and the backend.

bpy-free and torch-free (and numpy-free): the capture rig, the view-bundle format, the HTTP wire
contract (:mod:`shared.api`) and its client (:mod:`shared.client`), and the metadata keys written
into .blend files.
"""

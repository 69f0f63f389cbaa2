"""Content hash: stable across save/reopen, changed by any edit of geometry, modifiers or materials."""

from __future__ import annotations

from tests.blender_addon.blender_helpers import box


def test_hash_is_stable_across_save_and_reopen_and_changes_on_edits(blender, tmp_path):
    bpy = blender
    from blender_addon.content_hash import content_hash

    obj = box("Thing", size=(1.0, 2.0, 0.5))
    obj.modifiers.new("Bevel", "BEVEL").width = 0.05
    first = content_hash(obj)
    assert first == content_hash(obj)  # repeatable
    path = tmp_path / "thing.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["Thing"]
    assert content_hash(obj) == first

    seen = {first}

    def changed() -> str:
        h = content_hash(obj)
        assert h not in seen
        seen.add(h)
        return h

    obj.data.vertices[0].co.x += 0.01  # geometry
    changed()
    obj.modifiers["Bevel"].width = 0.1  # modifier (evaluated geometry)
    changed()
    bsdf = obj.data.materials[0].node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.123  # material value
    changed()
    mix = obj.data.materials[0].node_tree.nodes.new("ShaderNodeMix")  # material graph
    changed()
    obj.data.materials[0].node_tree.links.new(mix.outputs[0], bsdf.inputs["Metallic"])
    changed()
    obj.location.z += 1.0  # placement in the world
    changed()

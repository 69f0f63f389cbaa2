"""Keys Asset2Vec writes into a .blend file, so add-on, bulk workers and tools agree.

The artist's own asset tags and description are never touched except to *add* accepted
predicted tags; everything Asset2Vec knows lives under one namespaced custom property.
"""

#: Custom property (an IDProperty group) on the asset's ID holding everything Asset2Vec wrote.
NAMESPACE = "asset2vec"

#: Keys inside the namespace group.
CODE_SHAPE = "code_shape"  # list of floats
CODE_TEXTURE = "code_texture"  # list of floats
MODEL_ID = "model_id"  # str
PREDICTED_TAGS = "predicted_tags"  # {tag: probability}
ADDED_TAGS = "added_tags"  # tags Asset2Vec added to the asset's tags (so they can be removed)
NEIGHBOURS = "neighbours"  # JSON string: [{"name", "file", "distance", "space"}]
TIMESTAMP = "timestamp"  # ISO 8601, UTC
CONTENT_HASH = "content_hash"  # hash of the evaluated geometry + materials that was embedded
REJECTED_TAGS = "rejected_tags"  # predicted tags the artist rejected (never proposed again)
ACCEPTED_TAGS = "accepted_tags"  # added tags the artist accepted: the artist's now (absent in older files)
FAMILY_MEMBERS = "family_members"  # JSON string: [{"name", "parameters", "code_shape", "code_texture", ...}]
ASSET_NAME = "asset_name"  # the name the asset was catalogued under on the backend (for neighbour queries)
CODE_SOURCE = "code_source"  # "encoder" (the instant encoder's code; the backend refines it) or "inversion"

#: Custom-property prefix that marks a parameter of a parametric family on an object.
FAMILY_PARAM_PREFIX = "a2v_"
#: Custom property naming the family an object (or collection) belongs to.
FAMILY_NAME = "asset2vec_family"
#: Custom property on a material node input's node to mark it as a family parameter.
MATERIAL_PARAM_MARK = "asset2vec_param"

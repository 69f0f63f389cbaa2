"""Constants shared by the training tests' fixtures and test modules (a plain module: conftest is not importable
by name when several test folders have one)."""

IMAGE_SIZE = 24
#: Six assets: three shapes x two colours, so shape and texture vary independently.
ITEMS = [(k, c) for k in ("ball", "crate", "table") for c in ("red", "blue")]
#: Small enough for a loaded 2-core CPU, long enough to beat a constant colour and separate six codes.
OVERRIDES = {"image_size": IMAGE_SIZE, "rays_per_batch": 512, "checkpoint_every": 1000, "lr": 5e-3}
STEPS = 150

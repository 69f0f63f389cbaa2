"""Auto-decoder training, code inversion, checkpoints and the trained-run facade (:mod:`.run`)."""

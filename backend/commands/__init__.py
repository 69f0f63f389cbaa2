"""Subcommands of the ``asset2vec`` CLI, one module per area; each exposes ``register(subparsers)``."""

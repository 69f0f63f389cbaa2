"""Access to Asset2Vec's shared protocol (rig, bundle, metadata keys, API, backend client) from the add-on.

In the repository and in headless runs the protocol is the top-level ``shared`` package; the
built extension vendors it as ``<extension>/shared`` so the add-on needs nothing installed.
"""

try:  # inside the built extension
    from .shared import api, atomic, bundle, client, library_files, metadata, naming, rig, tempfolders  # type: ignore[no-redef]
except ImportError:  # repository checkout / headless workers
    from shared import api, atomic, bundle, client, library_files, metadata, naming, rig, tempfolders  # type: ignore[no-redef]

__all__ = ["api", "atomic", "bundle", "client", "library_files", "metadata", "naming", "rig", "tempfolders"]

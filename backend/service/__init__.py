"""The backend service: HTTP API (FastAPI), job queues, token auth, zeroconf advertisement.

    from backend.service.engine import Engine
    from backend.service.server import Service

    with Service(Engine.open("runs/demo"), port=0) as service:   # serving from a thread
        print(service.url)

``asset2vec serve`` does the same from the command line (see backend.commands.service): it serves the
starter model until a library model is built.
Every request and answer is a data class of the wire contract :mod:`shared.api`.

Modules: :mod:`.app` (routes, validation), :mod:`.jobs` (queue), :mod:`.engine` (the facade over the parts:
:mod:`.served` the served model and switching, :mod:`.embedding` embed and refinement, :mod:`.tagging` tag
classifiers and review, :mod:`.building` model building, :mod:`.thumbnails`, :mod:`.uploads`),
:mod:`.auth` (token policy), :mod:`.discovery` (zeroconf), :mod:`.server` (uvicorn, shutdown).
"""

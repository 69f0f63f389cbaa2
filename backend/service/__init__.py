"""The backend service: HTTP API (FastAPI), one-worker job queue, token auth, zeroconf advertisement.

    from backend.service.engine import Engine
    from backend.service.server import Service

    with Service(Engine.open("runs/demo"), port=0) as service:   # serving from a thread
        print(service.url)

``asset2vec serve --run RUN_DIR`` does the same from the command line (see backend.commands.service).
Modules: :mod:`.app` (routes, validation), :mod:`.jobs` (queue), :mod:`.engine` (model + library glue),
:mod:`.auth` (token policy), :mod:`.discovery` (zeroconf), :mod:`.server` (uvicorn, shutdown).
"""

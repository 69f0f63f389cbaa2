"""``asset2vec serve``: run the backend service (HTTP API + job queue + zeroconf) for a trained run."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backend.cli import CommandError
from shared import api

RUN_ENV = "ASSET2VEC_RUN"
DEFAULT_TOKEN_ENV = "ASSET2VEC_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained run to the Blender add-on over HTTP (127.0.0.1 by default)",
        description=(
            "Serve a trained run: the add-on uploads captured views, gets codes, tags and similar assets back. "
            "Binds 127.0.0.1 (this machine only) by default; any other --host needs a token. "
            "Advertised over zeroconf so the add-on finds it. Ctrl-C stops it."
        ),
    )
    p.add_argument("--run", default=os.environ.get(RUN_ENV),
                   help=f"serve this one trained run folder (from `asset2vec train`; default: ${RUN_ENV}); without "
                        "it the backend serves a library home (--home)")
    p.add_argument("--home", help="library home to serve (default: $ASSET2VEC_HOME, else ~/.asset2vec): its active "
                                  "model, or the generic starter model until one is built with `asset2vec index` "
                                  "or the add-on's Build Model button")
    p.add_argument("--library-root", action="append", default=None, metavar="DIR", dest="library_roots",
                   help="a folder under which the add-on's Build Model from Library may read a library (repeatable; "
                        "default: the folders the home's models were built from); any other folder is refused")
    p.add_argument("--catalogue", help="catalogue file (default: RUN_DIR/catalogue.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 = the LAN)")
    p.add_argument("--port", type=int, default=api.DEFAULT_PORT, help=f"TCP port (default {api.DEFAULT_PORT})")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="VAR",
                   help=f"environment variable holding the token (default {DEFAULT_TOKEN_ENV}); required beyond "
                        "loopback, optional on it")
    p.add_argument("--generate-token", action="store_true", help="generate a random token and print it once")
    p.add_argument("--no-zeroconf", action="store_true", help="do not advertise the backend on the network")
    p.add_argument("--invert-steps", type=int, help="inversion steps per embedded asset (default: the preset's)")
    p.add_argument("--no-instant", action="store_true",
                   help="always embed by inversion, even when the model has an instant encoder (by default a model "
                        "with one answers at once from it and refines the code by inversion in the background)")
    p.add_argument("--refine-steps", type=int,
                   help="inversion steps of that background refinement (default: a third of --invert-steps, else of "
                        "the preset's: it starts from the encoder's code)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--generic", action="store_true",
                   help="announce the model as generic (not trained on this studio's library)")
    p.add_argument("--target-precision", type=float, metavar="P",
                   help="precision (0-1) a tag must reach out of fold to be written into artists' files when the "
                        "tag classifiers are (re)trained by this server (default: the tag model's own, 0.9); "
                        "below it a tag is only suggested")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="build models (the add-on's Build Model) with capture and appearance features on a Ray "
                        "cluster, as `asset2vec index --ray`: its address, or no value for a Ray instance on this "
                        "machine (see the README's 'Indexing on a Ray cluster')")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)


def resolve_token(host: str, token_env: str | None, generate: bool) -> tuple[str | None, bool]:
    """``(token, generated)`` from the flags; refuses a non-loopback host without one."""
    from backend.service.auth import AuthError, check_bind, generate_token, token_from_env

    token = generate_token() if generate else (token_from_env(token_env) if token_env else None)
    try:
        check_bind(host, token)
    except AuthError as e:
        if not generate and token_env and token_env in os.environ:
            blank = not os.environ[token_env].strip()
            raise CommandError(f"${token_env} is set but empty. {e}" if blank else f"${token_env}: {e}") from None
        raise CommandError(str(e)) from None
    return token, generate


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.library.errors import LibraryError
    from backend.service.auth import AuthError
    from backend.service.errors import ServiceError

    # Refuse an unsafe bind before the (slow) model load.
    token, generated = resolve_token(args.host, args.token_env, args.generate_token)
    if args.invert_steps is not None and args.invert_steps < 1:
        raise CommandError("--invert-steps must be at least 1")
    if args.refine_steps is not None and args.refine_steps < 1:
        raise CommandError("--refine-steps must be at least 1")
    if args.target_precision is not None and not 0.0 < args.target_precision <= 1.0:  # NaN fails too
        raise CommandError(f"--target-precision must be in (0, 1] (a precision, not a percentage), "
                           f"got {args.target_precision}")
    for root in args.library_roots or ():
        if not os.path.isdir(os.path.expanduser(root)):
            raise CommandError(f"--library-root {root}: no such folder")
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from backend.lifecycle.home import HomeError, LibraryHome
    from backend.model.errors import ModelError
    from backend.service.engine import Engine
    from backend.service.server import Service

    if args.run and args.ray:
        raise CommandError("--ray is for building models in a library home (--home); a single --run builds none")
    print(f"loading {'run ' + args.run if args.run else 'library home'} ...", file=sys.stderr, flush=True)
    try:
        if args.run:
            engine = Engine.open(args.run, args.catalogue, invert_steps=args.invert_steps, device=args.device,
                                 generic=args.generic, instant=not args.no_instant, refine_steps=args.refine_steps,
                                 tag_target=args.target_precision)
        else:
            engine = Engine.open_home(LibraryHome.at(args.home), invert_steps=args.invert_steps, device=args.device,
                                      instant=not args.no_instant, refine_steps=args.refine_steps,
                                      tag_target=args.target_precision, ray_address=args.ray)
        service = Service(engine, host=args.host, port=args.port, token=token, advertise=not args.no_zeroconf,
                          log_level=args.log_level, library_roots=args.library_roots)
    except (AuthError, ServiceError, LibraryError, ModelError, HomeError) as e:
        raise CommandError(str(e)) from None
    info = engine.info()
    if info.generic:
        print("serving the generic starter model (trained on the sample library): build one from your own library "
              "with `asset2vec index FOLDER` or the add-on's Build Model from Library button", file=sys.stderr)
    print(f"Asset2Vec backend: model {info.model_id} ({info.preset}, {info.device}), "
          f"{info.assets} assets, serving at {service.url}{api.API_PREFIX}"
          + ("" if args.host == "127.0.0.1" else f" (bound to {args.host}:{service.port})"), file=sys.stderr)
    if info.instant_embed:
        print("instant embedding: answers come from the model's encoder at once, then inversion refines each code "
              "in the background (--no-instant turns this off)", file=sys.stderr)
    if generated:
        # Printed once, on stdout, so it can be piped; it is never written anywhere else.
        print(f"token (enter it in the add-on's preferences): {token}", flush=True)
    elif token:
        print(f"token required (from ${args.token_env})", file=sys.stderr)
    roots = service.app.state.library_roots.roots
    print(("libraries may be read from: " + ", ".join(map(str, roots))) if roots else
          "no library root: Build Model from Library is refused until the backend is started with --library-root DIR",
          file=sys.stderr)
    if service.advertiser:
        print(f"advertised over zeroconf as {api.SERVICE_TYPE}", file=sys.stderr)
    print("press Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        service.run()
    except KeyboardInterrupt:
        pass  # uvicorn already shut down gracefully and re-raised the signal
    finally:
        engine.close()
    print("backend stopped", file=sys.stderr)
    return 0

"""``mobileface serve``: the HTTP service (FastAPI on uvicorn) and its web page."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.gallery.pipeline import add_encoder_arguments
    from mobileface.gallery.store import DB_HELP

    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service (verify, embed, enrol, identify) and its web page",
        description=(
            "Serve the JSON API under /v1 (OpenAPI docs at /docs) and a web page at / to try "
            "it from a browser. An API key is required whenever the address is not loopback: "
            "set $MOBILEFACE_API_KEY or pass --api-key-file (clients send it as X-API-Key). "
            "With a PostgreSQL gallery, any number of these processes can serve one database: "
            "each sees every enrolment as soon as it commits; while the database is "
            "unreachable, requests get 503 and the service recovers by itself."
        ),
    )
    parser.add_argument("--db", required=True, help=f"the gallery (created if missing): {DB_HELP}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key-file", help="file with the accepted API keys, one per line")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--no-auth", action="store_true", help="serve without an API key, even off loopback"
    )
    auth.add_argument(
        "--require-auth", action="store_true", help="require the API key on loopback too"
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=20.0, help="largest request body (default 20 MB)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image in pixels, checked before decoding (default 40,000,000)",
    )
    parser.add_argument(
        "--max-images", type=int, default=20, help="most photos per enrolment (default 20)"
    )
    parser.add_argument(
        "--index",
        choices=("auto", "exact", "approx"),
        default="auto",
        help="search method (auto: approximate from 200,000 faces on; on PostgreSQL, the "
        "planner's choice)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="images processed at once (default: CPU cores, at most 4)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    add_encoder_arguments(parser, threads=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.errors import MissingDependencyError

    try:
        import uvicorn

        from mobileface.service import ServiceConfig, create_app, load_api_keys
    except ImportError as exc:
        raise MissingDependencyError(
            f"mobileface serve needs the service extra ({exc.name} is missing): "
            "pip install 'mobileface[serve]'"
        ) from exc
    from mobileface.gallery.pipeline import encoder_from_args

    config = ServiceConfig(
        db=args.db,
        host=args.host,
        api_keys=load_api_keys(args.api_key_file),
        require_auth=False if args.no_auth else (True if args.require_auth else None),
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_images=args.max_images,
        index=args.index,
        threshold=args.threshold,
    )
    if args.max_pixels is not None:
        config.max_pixels = args.max_pixels
    if args.workers is not None:
        config.workers = max(1, args.workers)
    config.check()  # before loading the model: a refused setting fails fast
    encoder = encoder_from_args(args, workers=config.workers)
    app = create_app(config, encoder=encoder)
    auth = "API key required" if config.auth_required else "no authentication"
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"mobileface serve: {app.state.gallery.store.location} with {app.state.gallery.model}, on "
        f"http://{host}:{args.port} ({auth})",
        flush=True,
    )
    if encoder.threshold_source.startswith("fallback"):
        print(
            f"mobileface serve: warning: {encoder.model.name} has no calibrated threshold; "
            f"deciding at the generic {encoder.threshold} (pass --threshold to set one)",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0

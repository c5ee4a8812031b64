"""`jaxedit serve (RUN_DIR | GEN_DIR EDITORS_DIR) [--encoder DIR] [--host 127.0.0.1] [--port 8000]`."""

from __future__ import annotations

import sys

from jaxedit.cli import types
from jaxedit.cli.binding import add_force_flag, check_generator
from jaxedit.cli.errors import flag_named
from jaxedit.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        usage="jaxedit serve (RUN_DIR | GEN_DIR EDITORS_DIR) [--encoder DIR] [--host HOST] [--port PORT] "
        "[--preview {auto,on,off}] [--force]",
        help="the browser editor: one local page with a slider per attribute",
        description="Serve the editor page on this machine. RUN_DIR is a `python -m train` run directory (its "
        "editors, and the schematic of its synthetic world as the face); GEN_DIR EDITORS_DIR a converted "
        "generator and editors. Everything is compiled at start-up; the page needs no network.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="DIR", help="RUN_DIR (python -m train), or GEN_DIR EDITORS_DIR (converted)"
    )
    parser.add_argument("--encoder", metavar="DIR", help="pSp / e4e encoder directory: photos become faces")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=types.integer, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--preview",
        choices=("auto", "on", "off"),
        default="auto",
        help="low-resolution image while a slider is dragged: auto (when measured faster, default), on, off",
    )
    add_force_flag(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from jaxedit.serve.models import face_detector, load_models
    from jaxedit.serve.render import Renderer
    from jaxedit.serve.server import make_server

    if len(args.paths) > 2:
        raise ConfigError(f"expected RUN_DIR or GEN_DIR EDITORS_DIR, got {len(args.paths)} paths")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0..65535")
    face, editors, _ = load_models(args.paths)
    if not hasattr(face, "world"):  # a generator: the one the editors record, unless --force
        editors_dir = args.paths[1] if len(args.paths) == 2 else f"{args.paths[0]}/editors"
        check_generator(editors, face, editors_dir, args.force)
    encoder = None
    if args.encoder is not None:
        from jaxedit.encoders import load_encoder

        with flag_named("--encoder"):
            encoder = load_encoder(args.encoder)
    renderer = Renderer(face, editors, encoder, preview=args.preview)
    detector = face_detector() if encoder is not None else None
    print(f"jaxedit serve: {renderer.describe()}", file=sys.stderr)
    print("jaxedit serve: compiling for the page's shapes ...", file=sys.stderr)
    timings = renderer.warm_up()
    preview = (
        f"preview {renderer.preview_resolution} px {1000 * timings.preview:.0f} ms"
        if renderer.use_preview
        else "no preview"
    )
    print(
        f"jaxedit serve: ready in {timings.compile:.1f} s; full image {1000 * timings.full:.0f} ms, {preview}",
        file=sys.stderr,
    )
    if args.host not in LOOPBACK:
        print(
            f"jaxedit serve: warning: listening on {args.host}: anyone who can reach this machine can use the editor",
            file=sys.stderr,
        )
    try:
        server = make_server(renderer, args.host, args.port, detector=detector)
    except OSError as error:
        raise ConfigError(f"--host {args.host} --port {args.port}: cannot listen ({error.strerror or error})") from None
    print(f"jaxedit serve: open {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("jaxedit serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0

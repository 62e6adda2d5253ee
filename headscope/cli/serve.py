"""`headscope serve [--host 127.0.0.1] [--port 8000] [--model NAME[=PATH]]... [--allow-host NAME]...`: the web app."""

import argparse
import errno

from headscope.cli.common import add_model_option, fail


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a whole number from 0 to 65535 (0: any free one)")
    return int(text)


def add_parser(sub) -> None:
    from headscope.server.settings import Settings

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8000, help="0: any free port (the one chosen is printed)")
    add_model_option(p, "models to serve; the first is the default (default: every built-in)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--max-connections", type=int, default=Settings.max_connections,
                   help="open connections; beyond it a new one closes the longest-idle one, or gets 503 if none is idle")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (a name or address this server is reached "
                   "by, besides localhost, 127.0.0.1, [::1] and the address it listens on; * for any); repeatable")
    p.set_defaults(func=serve)



def serve(args: argparse.Namespace) -> None:
    from headscope.server.app import create_app
    from headscope.server.http.connections import bind, make_server
    from headscope.server.settings import Settings

    try:  # before loading the models: a busy port is said at once, in one line
        sock = bind(args.host, args.port)
    except OSError as e:
        fail(f"port {args.port} is in use; stop the server that holds it or choose another with --port"
             if e.errno == errno.EADDRINUSE else f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    settings = Settings(models=args.model, max_connections=args.max_connections, allowed_hosts=tuple(args.allow_host))
    try:
        app = create_app(settings)
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load (headscope.models.hf.model.CheckpointError is a ValueError)
        sock.close()
        fail(e)
    port = sock.getsockname()[1]  # the port asked for, or the one the system chose for --port 0
    print(f"Headscope: models {', '.join(app.state.models)} loaded; open http://{args.host}:{port}/", flush=True)
    make_server(app, args.host, port, settings, log_level=args.log_level).run(sockets=[sock])

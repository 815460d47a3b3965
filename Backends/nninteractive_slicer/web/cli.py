"""``nninteractive-slicer web [IMAGE...] --backend local|URL|official+URL``: the web app on this machine.

It listens on 127.0.0.1 unless told otherwise. Like the server, it listens on another address only with
a key (``--api-key``/``$NNINTERACTIVE_WEB_KEY``: the page then asks for it in its URL, ``?key=``) or with
``--allow-remote-without-key``; put a TLS reverse proxy in front (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..backends.registry import backend_class, local_kind
from ..headless.backend_spec import API_KEY_VARIABLE, BackendSpecError, backend_config
from ..listening import is_loopback
from .lib import ensure_lib_importable

ensure_lib_importable()

from SlicerNNInteractiveLib.automatic import BackendChoice  # noqa: E402

WEB_KEY_VARIABLE = "NNINTERACTIVE_WEB_KEY"


class ListenError(ValueError):
    """Listening beyond this machine without a key and without saying so."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", help="NIfTI, NRRD or MHA files, or folders with one DICOM series")
    parser.add_argument("--backend", default=local_kind(),
                        help=f"local, a server URL, or official+URL (its API key: ${API_KEY_VARIABLE})")
    parser.add_argument("--model", help="local backend: model folder or official model id (default: recommended)")
    parser.add_argument("--device", default="auto", help="local backend: auto, cuda, cuda:N or cpu")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    parser.add_argument("--api-key", default=os.environ.get(WEB_KEY_VARIABLE, ""),
                        help=f"key the page's URL must carry as ?key= (default ${WEB_KEY_VARIABLE})")
    parser.add_argument("--allow-remote-without-key", action="store_true",
                        help="listen on a non-loopback address without a key (anyone who reaches it can use it)")
    parser.add_argument("--sessions", type=int, default=0, metavar="N",
                        help="one scene per browser session: a launcher starts one app process per visit (at most N)")
    parser.add_argument("--idle-exit", type=int, default=0, metavar="S", help=argparse.SUPPRESS)  # a session's
    parser.add_argument("--volume-rendering", choices=("auto", "on", "off"), default="auto",
                        help="3D volume rendering at start (auto: on with a GPU renderer, off on a CPU one)")


def backend_choice(spec: str, model: str | None, device: str) -> BackendChoice:
    """The Lib's backend choice for ``--backend`` (the same values as ``nninteractive-slicer segment``)."""
    config = backend_config(spec, model, device)
    if backend_class(config.kind).needs_url:
        return BackendChoice(config.kind, server=config)
    return BackendChoice(config.kind, local=config)



def check_listening(host: str, api_key: str, allow_remote_without_key: bool) -> None:
    if not api_key and not is_loopback(host) and not allow_remote_without_key:
        raise ListenError(f"To listen on {host}, give a key (--api-key or ${WEB_KEY_VARIABLE}) or pass "
                          "--allow-remote-without-key.")


def run(args: argparse.Namespace) -> int:
    try:
        choice = backend_choice(args.backend, args.model, args.device)
        check_listening(args.host, args.api_key, args.allow_remote_without_key)
    except (BackendSpecError, ListenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    if args.sessions > 0:
        from .launcher import serve

        serve(session_arguments(args), args.host, args.port, args.sessions, args.api_key)
        return 0
    from .app import NNInteractiveWebApp

    rendering = {"auto": None, "on": True, "off": False}[args.volume_rendering]
    app = NNInteractiveWebApp(choice=choice, images=args.images, volume_rendering=rendering, api_key=args.api_key)
    if app.state.error:
        print(f"error: {app.state.error}", file=sys.stderr)
        return 2
    app.server.start(host=args.host, port=args.port, open_browser=False, timeout=args.idle_exit or None)
    return 0


def session_arguments(args: argparse.Namespace) -> list[str]:
    """What each session's process gets: the same images, backend and options (the key through the environment)."""
    found = [*args.images, "--backend", args.backend, "--device", args.device, "--volume-rendering",
             args.volume_rendering]
    if args.model:
        found += ["--model", args.model]
    if args.allow_remote_without_key:
        found.append("--allow-remote-without-key")
    if args.api_key:
        os.environ[WEB_KEY_VARIABLE] = args.api_key  # inherited by the sessions, never on a command line
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nninteractive-slicer web", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # a session's process, started by the launcher
    sys.exit(main())

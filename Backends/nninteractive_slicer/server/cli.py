"""``nninteractive-slicer-server``: load the model once and serve it to many users over HTTP(S)."""

from __future__ import annotations

import importlib.util
import logging
import sys

from ..errors import BackendUnavailableError
from ..listening import is_loopback
from . import logs
from .auth import short_keys
from .options import parse
from .serving import uvicorn_options

log = logging.getLogger("nninteractive_slicer.server")


def main(argv: list[str] | None = None) -> None:
    config, options = parse(argv)
    logs.configure(options.log_level, options.log_format)
    logs.route_stdout()
    logging.captureWarnings(True)
    if not config.api_keys:
        log.warning("NO API KEY: anyone who can reach %s:%s can use this server%s", options.host, options.port,
                    " -- from ANY machine (--allow-remote-without-key)" if not is_loopback(options.host) else "")
    for user in short_keys(config.api_keys):
        log.warning("the API key of user %s is short; use at least 16 random characters", user)
    if options.tls_cert is None and not is_loopback(options.host):
        log.warning("serving plain HTTP on %s: keys and images travel unencrypted; use --tls-cert/--tls-key, an "
                    "SSH tunnel or a TLS reverse proxy", options.host)

    if options.replicas is not None:
        if importlib.util.find_spec("ray") is None:
            raise SystemExit("error: --replicas needs Ray Serve: pip install 'nninteractive-slicer[cluster]'")
        from .cluster import serve_locally

        serve_locally(config, options)
        return

    import uvicorn

    from .app import create_app

    try:
        app = create_app(config)
    except BackendUnavailableError as exc:
        log.error("%s", exc)
        sys.exit(1)
    if options.tls_cert is not None:  # uvicorn's own start-up line says http: the TLS is this server's (serving.py)
        log.info("serving HTTPS on https://%s:%s", options.host, options.port)
    uvicorn.run(app, host=options.host, port=options.port, log_config=None,
                **uvicorn_options(options.request_timeout_s, options.max_connections,
                                  options.max_connections_per_address, tls_cert=options.tls_cert,
                                  tls_key=options.tls_key))


if __name__ == "__main__":
    main()

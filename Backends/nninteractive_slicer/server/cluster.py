"""The server on Ray Serve: the same FastAPI app on several replicas, one per GPU, on any number of nodes.

A session lives in one replica's memory (its engine, on that replica's device thread), so every call of
a client must reach the replica that holds it. The remote client sends a stable key in
:data:`~..protocol.contract.AFFINITY_HEADER` with every call, and Ray's consistent-hash router maps the key to
a replica, strictly (no fallback replica: a fallback would answer "session unknown"). Clients that send
no key still work, but each call lands on a random replica, so only one-replica deployments suit them.

When a replica dies, Ray starts another and the ring moves the dead replica's keys; the client finds
its session gone and restores it from its journal. With a ``--cache-dir`` every replica can read, the
restored session binds the image from disk and nothing is uploaded again.

The router reads the header name from ``RAY_SERVE_SESSION_ID_HEADER_KEY`` in Ray's own processes, so
it must be set on every node before Ray starts; a replica refuses to start when it is not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray._private import ray_constants
from ray.serve.config import HTTPOptions, RequestRouterConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol.contract import AFFINITY_HEADER, REPLICA_HEADER
from . import cluster_proxy, logs
from .app import create_app
from .cluster_metrics import deployment_render, publish_forever
from .cluster_processes import end, ray_descendants
from .config import ServerConfig
from .options import ServeOptions, parse
from .serving import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

log = logging.getLogger("nninteractive_slicer.server")

APP_NAME = "nninteractive"
DEPLOYMENT_NAME = "Server"
ROUTER_ENV = "RAY_SERVE_SESSION_ID_HEADER_KEY"
ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is loopback
LOOPBACK = "127.0.0.1"
AUTH_MODE_ENV, AUTH_TOKEN_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"
# Calls one replica accepts at once; our app queues predictions on its device thread itself, and a
# router queue in front of it would only hide heartbeats and uploads behind prompts.
MAX_ONGOING_REQUESTS = 256


class ReplicaHeader:
    """Names the replica that answered in every response, so clients, tests and logs can see placement."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app, self.replica = app, replica.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tag(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REPLICA_HEADER.lower().encode(), self.replica)]
            await send(message)

        await self.app(scope, receive, tag)


@serve.ingress()
class ServerReplica:
    """One replica: its own model, device thread, sessions and memory cache (the disk cache may be shared)."""

    def __init__(self, config: ServerConfig, log_level: str = "info", log_format: str = "json") -> None:
        header = os.environ.get(ROUTER_ENV, "x-session-id")
        if header.lower() != AFFINITY_HEADER.lower():
            raise RuntimeError(f"Session affinity is not configured: set {ROUTER_ENV}={AFFINITY_HEADER} on every Ray "
                               f"node before Ray starts (it is {header!r}); see docs/deployment.md.")
        if not cluster_proxy.configured():
            raise RuntimeError(f"Serve's proxy has no connection limits: set {cluster_proxy.CALLBACK_ENV}="
                               f"{cluster_proxy.CALLBACK} on every Ray node before Ray starts; see docs/deployment.md.")
        logs.configure(log_level, log_format)
        self._config = config

    async def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve on the replica, so the model loads there and not in the process that deploys."""
        app = create_app(self._config)
        replica = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(ReplicaHeader, replica=replica)
        metrics = app.state.runtime.metrics
        own = metrics.render
        self._publishing = asyncio.create_task(publish_forever(replica, own))
        metrics.render = deployment_render(replica, own)  # /metrics shows every replica, labelled
        return app


def application(config: ServerConfig, replicas: int, replica_cpus: float, replica_gpus: float,
                log_level: str = "info", log_format: str = "json") -> serve.Application:
    """The Serve application: ``replicas`` copies of the server behind the consistent-hash router."""
    return serve.deployment(ServerReplica, name=DEPLOYMENT_NAME).options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": replica_cpus, "num_gpus": replica_gpus},
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        request_router_config=RequestRouterConfig(request_router_class=ROUTER,
                                                  request_router_kwargs={"num_fallback_replicas": 0}),
    ).bind(config, log_level, log_format)


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for a Serve config file (``serve deploy``): ``args.argv`` are server CLI options.

    Replica count and resources come from ``--replicas``/``--replica-cpus``/``--device`` here, and may be
    overridden per deployment in the config file."""
    config, options = parse([str(a) for a in args.get("argv", [])])
    if not config.api_keys and not options.allow_remote_without_key:  # the proxies' address is not ours to check
        raise ValueError("A Ray Serve deployment needs API keys (--api-keys-file or --api-key in args.argv), or "
                         "--allow-remote-without-key.")
    replicas = int(options.replicas) if options.replicas not in (None, "auto") else 1
    return application(config, replicas, options.replica_cpus, 0.0 if config.device == "cpu" else 1.0,
                       options.log_level, options.log_format)


def resolve_replicas(replicas: str, device: str) -> tuple[int, str]:
    """``N`` or ``auto`` (one per visible GPU) -> (count, device); ``auto`` without a GPU runs one CPU replica."""
    if replicas != "auto":
        count = int(replicas)
        if count < 1:
            raise SystemExit("error: --replicas must be at least 1.")
        return count, device
    import torch

    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if gpus == 0:
        log.warning("--replicas auto: no GPU is visible, so one replica runs on the CPU")
        return 1, "cpu"
    return gpus, device


class LocalCluster:
    """A Ray instance on this machine serving the application on ``host:port``; stops Ray when it exits."""

    def __init__(self, config: ServerConfig, replicas: int, *, host: str = "127.0.0.1", port: int = 1527,
                 replica_cpus: float = 1.0, tls_cert: str | None = None, tls_key: str | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 log_level: str = "info", log_format: str = "json") -> None:
        if config.device == "cpu" and config.torch_threads is None:  # replicas share the cores, not each take all
            config = ServerConfig(**{**config.__dict__, "torch_threads": max(1, (os.cpu_count() or 1) // replicas)})
        self.config, self.replicas, self.replica_cpus = config, replicas, replica_cpus
        self.http = HTTPOptions(host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                                keep_alive_timeout_s=65)
        self.log_level, self.log_format = log_level, log_format
        self.proxy_environment = cluster_proxy.environment(request_timeout_s, max_connections)
        self._before: set[tuple[int, int]] = set()
        self.url = f"{'https' if tls_cert else 'http'}://{host}:{port}"

    def __enter__(self) -> LocalCluster:
        # Inherited by every Ray process started below. All of them run here, so Ray's own ports (GCS, raylet,
        # workers, agents, metrics) need no other interface than loopback; only the proxy listens on ``host``.
        # Ray takes 127.0.0.1 as its node address only where it treats the machine as a single-node cluster.
        os.environ.update({ROUTER_ENV: AFFINITY_HEADER, SINGLE_NODE_ENV: "0", **self.proxy_environment})
        # Ray's token authentication (ray.init turns it on unless RAY_AUTH_MODE says otherwise), with a token of
        # this start that is never written to disk: Serve's replicas open one port each on all interfaces
        # (hard-coded in Serve), and it refuses every call without the token.
        if os.environ.get(AUTH_MODE_ENV, "token") != "token":
            log.warning("%s=%s: Ray's ports take calls from anyone who can reach them", AUTH_MODE_ENV,
                        os.environ[AUTH_MODE_ENV])
        os.environ.setdefault(AUTH_TOKEN_ENV, secrets.token_hex(32))
        ray_constants.ENABLE_RAY_CLUSTER = False  # what SINGLE_NODE_ENV says, in this process (Ray is imported)
        # A Ray of our own ("local"), never a cluster already running here, so stopping it stops nothing else.
        gpus = 0.0 if self.config.device == "cpu" else 1.0
        sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        self._before = ray_descendants()  # Ray processes of someone else (another cluster of this process)
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(self.replicas * self.replica_cpus)),
                 include_dashboard=False, logging_level=logging.WARNING, configure_logging=False,
                 _node_ip_address=LOOPBACK)
        if sigterm is not None:  # ray.init replaced it (and Ray's runtime worker aborts on SIGTERM): the caller's again
            signal.signal(signal.SIGTERM, sigterm)
        try:
            serve.start(http_options=self.http)
            serve.run(application(self.config, self.replicas, self.replica_cpus, gpus, self.log_level,
                                  self.log_format), name=APP_NAME, route_prefix="/")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop Serve and Ray, and end the Ray processes that would outlive them (see :mod:`.cluster_processes`)."""
        started = ray_descendants() - self._before
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if ended := end(started):
                log.info("ended %d Ray processes that outlived Ray", len(ended))


def replica_actor_name(replica: str) -> str:
    """The Ray actor name (namespace ``serve``) of the replica a response named in its replica header."""
    return f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#{replica}"


def serve_locally(config: ServerConfig, options: ServeOptions) -> None:
    """``nninteractive-slicer-server --replicas N``: serve until SIGINT or SIGTERM, then stop Ray."""
    replicas, device = resolve_replicas(options.replicas or "auto", config.device)
    if device != config.device:
        config = ServerConfig(**{**config.__dict__, "device": device})

    def stop(signum: int, _: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop: a second SIGTERM must not cut the cleanup short
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)  # LocalCluster keeps it through ray.init
    try:  # a stop while Ray or the replicas still start is a stop too: LocalCluster cleans up either way
        with LocalCluster(config, replicas, host=options.host, port=options.port, replica_cpus=options.replica_cpus,
                          tls_cert=str(options.tls_cert) if options.tls_cert else None,
                          tls_key=str(options.tls_key) if options.tls_key else None,
                          request_timeout_s=options.request_timeout_s, max_connections=options.max_connections,
                          log_level=options.log_level, log_format=options.log_format) as cluster:
            log.info("serving %d replicas on %s", replicas, cluster.url)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopped the replicas and Ray")

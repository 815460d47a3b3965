"""The server's command-line options, parsed once into what it serves (:class:`..config.ServerConfig`) and how it
listens (:class:`ServeOptions`): both the command (:mod:`.cli`) and Ray's application builder (:mod:`.cluster`)
read them here."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..engine.undo_history import DEFAULT_BUDGET_BYTES, DEFAULT_MAX_STEPS
from ..listening import is_loopback
from .auth import ENV_VAR, load_keys
from .config import GIB, MIB, Limits, ServerConfig
from .image_crypto import KEY_ENV, load_cache_key
from .serving import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

DESCRIPTION = "nninteractive-slicer-server: load the model once and serve it to many users over HTTP(S)."


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and logs, and how many replicas serve it on Ray (None: no Ray)."""

    host: str = "127.0.0.1"
    port: int = 1527
    tls_cert: Path | None = None
    tls_key: Path | None = None
    request_timeout_s: float = REQUEST_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_address: int | None = None
    allow_remote_without_key: bool = False
    log_level: str = "info"
    log_format: str = "json"
    replicas: str | None = None  # N or "auto"
    replica_cpus: float = 1.0


def parse(argv: list[str] | None = None) -> tuple[ServerConfig, ServeOptions]:
    """The options of ``argv``; SystemExit with a message when they are unsafe or inconsistent."""
    args = build_parser().parse_args(argv)
    return config_from_args(args), ServeOptions(
        host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
        request_timeout_s=args.request_timeout, max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        allow_remote_without_key=args.allow_remote_without_key, log_level=args.log_level, log_format=args.log_format,
        replicas=args.replicas, replica_cpus=args.replica_cpus)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nninteractive-slicer-server", description=DESCRIPTION)
    m = p.add_argument_group("model")
    m.add_argument("--model", default=None, help="official model id (default: the recommended one, downloaded once)")
    m.add_argument("--model-dir", type=Path, default=None, help="a model folder on disk (wins over --model)")
    m.add_argument("--device", default="auto", help="auto (CUDA, else CPU with a warning), cuda, cuda:N or cpu")
    m.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    m.add_argument("--device-threads", type=int, default=None,
                   help="prompts of different sessions that run at once, each with all --torch-threads (default: 2 "
                        "on a CPU with 2 or more torch threads, else 1; a GPU runs one at a time)")
    n = p.add_argument_group("network and security")
    n.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    n.add_argument("--port", type=int, default=1527)
    n.add_argument("--api-key", action="append", default=[], metavar="NAME:KEY",
                   help=f"an API key and its user name (repeatable); also from ${ENV_VAR} (comma-separated)")
    n.add_argument("--api-keys-file", type=Path, default=None, help="a file with one NAME:KEY per line")
    n.add_argument("--allow-remote-without-key", action="store_true",
                   help="DANGEROUS: listen on a non-loopback address without any API key")
    n.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S,
                   help="seconds a client may take to send a request's head, or pause within its body")
    n.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help="connections held at once, TLS handshakes included; keyless idle ones make room first, "
                        "more get 503")
    n.add_argument("--max-connections-per-address", type=int, default=None,
                   help="connections one client address may hold (default: half of --max-connections; behind a "
                        "reverse proxy every client has the proxy's address: raise it to --max-connections)")
    n.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (chain) to serve HTTPS")
    n.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    s = p.add_argument_group("sessions and limits")
    s.add_argument("--max-sessions", type=int, default=4, help="concurrent sessions (one per connected client)")
    s.add_argument("--max-sessions-per-user", type=int, default=None,
                   help="sessions one user (API key name) may hold (default: all but one of --max-sessions)")
    s.add_argument("--idle-timeout", type=float, default=1800.0, help="seconds without a prompt before a session "
                                                                       "is closed (clients restore it transparently)")
    s.add_argument("--liveness-timeout", type=float, default=90.0, help="seconds without any request, heartbeats "
                                                                         "included, before a client counts as gone")
    s.add_argument("--session-memory-gib", type=float, default=None,
                   help="memory all sessions together may use (about 20 bytes per image voxel each; default: half "
                        "the machine's memory, and at most 80%% of the GPU's)")
    s.add_argument("--cache-gib", type=float, default=4.0, help="memory for cached images (LRU)")
    s.add_argument("--cache-dir", type=Path, default=None, help="also keep images on disk here, across restarts")
    s.add_argument("--cache-dir-gib", type=float, default=20.0, help="disk budget of --cache-dir")
    s.add_argument("--share-images", action="store_true",
                   help="let every user bind every cached image, so nobody sends an image twice; but any key holder "
                        "can then tell whether an image was uploaded (default: each user sees their own uploads)")
    s.add_argument("--max-image-voxels", type=int, default=Limits.max_image_voxels)
    s.add_argument("--max-prompt-voxels", type=int, default=Limits.max_prompt_voxels,
                   help="the largest box one lasso or scribble may cover (bounds one prompt's device time)")
    s.add_argument("--undo-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help="steps each session can undo (default %(default)s)")
    s.add_argument("--undo-mib", type=float, default=DEFAULT_BUDGET_BYTES / MIB,
                   help="memory per session for undo snapshots (compressed); past it the oldest go first")
    s.add_argument("--prompt-budget", type=float, default=ServerConfig.prompt_budget_s,
                   help="seconds of device time one prompt may use; past it the prompt is stopped, nothing changes, "
                        "and the client gets a clear error (0: no budget; default %(default)s)")
    s.add_argument("--max-queued-per-session", type=int, default=ServerConfig.max_queued_per_session,
                   help="device calls one session may have waiting; more are refused as busy (default %(default)s)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument("--log-format", default="json", choices=["json", "text"])
    d = p.add_argument_group("patient data (see docs/deployment.md)")
    d.add_argument("--image-retention", type=float, default=10.0, metavar="HOURS",
                   help="keep an image this long after its user's last use, in memory and on disk (default: a "
                        "working day, %(default)s h); users can also delete their images at once")
    d.add_argument("--cache-key-file", type=Path, default=None,
                   help=f"a file with the key that encrypts --cache-dir (64 hex digits; or ${KEY_ENV}); a cache "
                        "written with another key, or none, is not read: its images are uploaded again")
    d.add_argument("--audit-log", type=Path, default=None,
                   help="append who uploaded, used and deleted which image (JSON lines) to this file")
    d.add_argument("--audit-log-mib", type=float, default=10.0, help="rotate the audit log at this size")
    d.add_argument("--audit-log-backups", type=int, default=10, help="rotated audit logs to keep")
    c = p.add_argument_group("scale-out on Ray Serve (pip install 'nninteractive-slicer[cluster]')")
    c.add_argument("--replicas", default=None, metavar="N|auto",
                   help="serve N replicas (auto: one per visible GPU) behind Ray Serve on a local Ray instance; "
                        "--max-sessions is per replica (see docs/deployment.md)")
    c.add_argument("--replica-cpus", type=float, default=1.0, help="Ray CPUs reserved per replica (fractions allowed)")
    return p



def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The server configuration; raises SystemExit with a message when the options are unsafe or inconsistent."""
    try:
        keys = load_keys(args.api_key, args.api_keys_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: API keys: {exc}") from exc
    if not keys and not is_loopback(args.host) and not args.allow_remote_without_key:
        raise SystemExit(f"error: no API key is configured, so the server listens on loopback only. Give keys "
                         f"(--api-key, --api-keys-file or ${ENV_VAR}) to listen on {args.host}, or pass "
                         "--allow-remote-without-key if anyone who can reach this port may use it.")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("error: --tls-cert and --tls-key go together.")
    if args.max_connections < 2 or (args.max_connections_per_address or 1) < 1:
        raise SystemExit("error: --max-connections must be at least 2 and --max-connections-per-address at least 1.")
    if args.undo_steps < 0 or args.undo_mib < 0:
        raise SystemExit("error: --undo-steps and --undo-mib cannot be negative (0 turns undo off).")
    try:
        cache_key = load_cache_key(args.cache_key_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cache key: {exc}") from exc
    if cache_key is not None and args.cache_dir is None:
        raise SystemExit("error: a cache key encrypts --cache-dir: give --cache-dir too (memory is never written).")
    if args.device_threads is not None and args.device_threads < 1:
        raise SystemExit("error: --device-threads must be at least 1.")
    if args.image_retention <= 0:
        raise SystemExit("error: --image-retention must be positive (hours).")
    cache_bytes = int(args.cache_gib * GIB)
    limits = Limits(max_image_voxels=args.max_image_voxels, max_prompt_voxels=args.max_prompt_voxels,
                    max_image_bytes=min(Limits.max_image_bytes, cache_bytes // 2))  # one user's upload share
    return ServerConfig(
        model_id=args.model, model_dir=args.model_dir, device=args.device, torch_threads=args.torch_threads,
        device_threads=args.device_threads, api_keys=keys, max_sessions=args.max_sessions,
        max_sessions_per_user=args.max_sessions_per_user,
        idle_timeout_s=args.idle_timeout,
        liveness_timeout_s=args.liveness_timeout, cache_bytes=cache_bytes, cache_dir=args.cache_dir,
        cache_dir_bytes=int(args.cache_dir_gib * GIB), share_images=args.share_images, limits=limits,
        undo_steps=args.undo_steps, undo_budget_bytes=int(args.undo_mib * MIB),
        session_memory_bytes=int(args.session_memory_gib * GIB) if args.session_memory_gib else None,
        image_retention_s=args.image_retention * 3600, cache_key=cache_key, audit_log=args.audit_log,
        audit_log_bytes=int(args.audit_log_mib * MIB), audit_log_backups=args.audit_log_backups,
        prompt_budget_s=args.prompt_budget or None, max_queued_per_session=max(1, args.max_queued_per_session),
    )

"""``gyre serve`` (the prediction server) and ``gyre predict`` (offline batch scoring).

``gyre serve`` resolves every model URI once, here (a bad URI fails in one clear line, not in
each worker), then starts uvicorn with ``N`` worker processes, uvloop and httptools; each
worker builds the app from ``gyre.serving._entry:app_from_env``, reading what was resolved
from the environment, and loads the models in its start-up. Like ``gyre server``, auth is on
by default as soon as an active API token exists, and the server refuses to listen beyond
loopback without it; requests then need a token with the ``predict`` scope.

``--canary ALIAS:PERCENT`` / ``--shadow ALIAS`` serve each registry model's ``ALIAS`` (or
version) as its challenger; ``--reload-interval`` makes the workers follow alias moves.
``--bundle FILE`` is edge mode: the bundle alone, no tracking server, the prediction log
kept on local disk and, with ``--sync-to``, copied to a central store in the background.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gyre import config
from gyre.cli._server_cmds import _is_loopback, _url_host
from gyre.errors import GyreError, InvalidArgument

__all__ = ["register"]

# Read by gyre.serving._entry (kept as literals: starting the server imports nothing of it).
_APP_FACTORY = "gyre.serving._entry:app_from_env"
_SPEC_ENV = "_GYRE_SERVE_SPEC"
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_RELOAD_INTERVAL_S = 10.0  # how often workers look for moved aliases, by default

_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "gyre.serving._logging.RequestContextFilter"}},
    "formatters": {"json": {"()": "gyre._jsonlog.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request"],
            "stream": "ext://sys.stderr",
        },
        # one line per request: buffered, written a few times a second (see _logging)
        "access": {
            "()": "gyre.serving._logging.AccessLogHandler",
            "formatter": "json",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "gyre": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "py.warnings": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "gyre.serving.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="Registry and API tokens (sqlite:///..., postgresql://..., http(s)://...). "
        "[env: GYRE_TRACKING_URI]",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``gyre serve`` and ``gyre predict`` to ``app``."""
    app.command("serve")(serve)
    app.command("predict")(predict)


def _split_name(item: str) -> tuple[str | None, str]:
    """``churn=models:/churn@champion`` -> ("churn", uri); a bare URI -> (None, uri)."""
    name, sep, rest = item.partition("=")
    if sep and name and ":" not in name and "/" not in name:
        return name, rest
    return None, item


def _parse_canary(text: str) -> tuple[str, float]:
    """``challenger:10`` -> ("challenger", 10.0)."""
    target, sep, share = text.rpartition(":")
    example = "e.g. --canary challenger:10 sends 10% of the requests to the challenger alias"
    try:
        percent: float | None = float(share.strip().rstrip("%"))
    except ValueError:
        percent = None
    if not sep or not target or percent is None:
        raise InvalidArgument(f"--canary {text!r} is not ALIAS:PERCENT", hint=example)
    if not 0 < percent <= 100:
        raise InvalidArgument(
            f"--canary {text!r}: the share {share.strip()!r} is not a percentage above 0 and "
            "at most 100",
            hint=example,
        )
    return target, percent


def _challenger_uri(source: str, target: str) -> str | None:
    """The URI of ``target`` (an alias, or a version number) of the registry model
    ``source`` names; None when ``source`` is not a registry URI."""
    from gyre.registry import parse_model_uri

    ref = parse_model_uri(source)
    if ref.kind != "registry":
        return None
    return f"models:/{ref.name}/{target}" if target.isdigit() else f"models:/{ref.name}@{target}"


# `gyre serve --help` groups its options (each group a table of its own, so the long option
# names of one are not squeezed by the --flag/--no-flag pairs of another at 80 columns)
BATCHING = "Batching"
LIMITS = "Limits"
LOG = "Prediction log"
DEPLOY = "Versions, canary and shadow"
EDGE = "Edge mode"


def serve(
    uris: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to serve: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH, "
            "a package folder or a .gyre bundle; NAME=URI serves it under another name.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    max_batch_size: Annotated[
        int,
        typer.Option(
            rich_help_panel=BATCHING,
            min=1,
            help="Most rows per predict call (1 turns batching off).",
        ),
    ] = 64,
    max_latency_ms: Annotated[
        float,
        typer.Option(
            rich_help_panel=BATCHING, min=0, help="Longest a batch waits for more requests."
        ),
    ] = 2.0,
    max_queue_rows: Annotated[
        int,
        typer.Option(
            rich_help_panel=BATCHING, min=1, help="Rows queued per model before requests get 429."
        ),
    ] = 4096,
    timeout: Annotated[
        float,
        typer.Option(
            rich_help_panel=LIMITS,
            min=0.001,
            help="Seconds before a prediction request gets 504 (not /batch: an upload is "
            "scored as long as it takes).",
        ),
    ] = 30.0,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            rich_help_panel=LIMITS, min=1, help="Largest JSON request body (413 past it)."
        ),
    ] = 16 * 1024 * 1024,
    max_inflight_bytes: Annotated[
        int,
        typer.Option(
            rich_help_panel=LIMITS,
            min=1,
            help="Request bodies a worker holds at once, /batch uploads aside (503 + "
            "Retry-After past it; parsed, a body takes several times its size).",
        ),
    ] = 64 * 1024 * 1024,
    log: Annotated[
        bool,
        typer.Option(
            "--log/--no-log", rich_help_panel=LOG, help="Log every prediction to the spool."
        ),
    ] = True,
    spool_dir: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=LOG,
            help="Prediction-log spool folder. [default: GYRE_SPOOL_DIR, i.e. "
            "GYRE_HOME/predictions/spool]",
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log", rich_help_panel=LOG, help="One JSON line per request."
        ),
    ] = True,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="Require API tokens with the predict scope. Default: on when any active "
            "token exists.",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            rich_help_panel=DEPLOY,
            min=0,
            help="Version to serve (and log) a folder, run or bundle as. [default: the "
            "bundle's registry version, else a number made of the package digest]",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=DEPLOY,
            help="ALIAS:PERCENT: that share of the requests goes to each registry model's "
            "ALIAS (or version), e.g. challenger:10.",
            show_default=False,
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=DEPLOY,
            help="ALIAS: mirror every request to each registry model's ALIAS (or version); "
            "its answers are logged, never returned.",
            show_default=False,
        ),
    ] = None,
    shadow_cpu: Annotated[
        float,
        typer.Option(
            rich_help_panel=DEPLOY,
            min=0,
            help="CPU a --shadow may take per worker, as a share of one core; copies past it "
            "are dropped (counted), so a costly shadow cannot take the CPU the answers need.",
        ),
    ] = 0.2,
    reload_interval: Annotated[
        float | None,
        typer.Option(
            rich_help_panel=DEPLOY,
            min=0,
            help="Seconds between registry checks for moved aliases (models:/NAME@ALIAS); "
            "0: only on POST /admin/reload. [default: 10; edge mode: 0]",
            show_default=False,
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=EDGE,
            help="Edge mode: serve this .gyre bundle alone (no tracking server, no network).",
            show_default=False,
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=EDGE,
            help="Edge mode: the prediction log's folder (spool/ and store/). "
            "[default: GYRE_HOME/predictions]",
            show_default=False,
        ),
    ] = None,
    sync_to: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=EDGE,
            help="Edge mode: copy the prediction log to this central store (a gyre server "
            "URL, s3://... or a folder) in the background.",
            show_default=False,
        ),
    ] = None,
    sync_interval: Annotated[
        float | None,
        typer.Option(
            rich_help_panel=EDGE,
            min=0,
            help="Seconds between syncs (with --sync-to); 0: only on POST /admin/sync. "
            "[default: 60]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve models over HTTP: Open Inference Protocol v2, /predict, /batch, /metrics.

    Every answered prediction is logged (GYRE_HOME/predictions); aliases are followed as they
    move. Auth is on when tokens exist, and required off 127.0.0.1.

    Example: gyre serve models:/churn@champion --workers 2 --canary challenger:10

    Example (an offline edge box): gyre serve --bundle churn.gyre --sync-to https://central
    """
    from gyre.serving import _listen, resolve_model
    from gyre.serving._protocol import HOLDING_PROTOCOL
    from gyre.serving._slots import resolve_bundle

    edge = bundle is not None
    _check_mode(uris or [], edge, canary, shadow, reload_interval, log_dir, sync_to, log, version)
    if sync_interval is not None and not sync_to:
        raise InvalidArgument(
            f"--sync-interval {sync_interval:g} without --sync-to: there is nowhere to sync to",
            hint="add --sync-to URL (a gyre server, s3://... or an absolute folder)",
        )
    # Before anything is resolved or loaded: what would otherwise fail only in the workers
    # (uvicorn's bind, the prediction log's first write, the first background sync).
    if sync_to:
        _check_sync_to(sync_to)
    _check_listen(host, port, workers)
    spool = None
    edge_spec: dict[str, Any] | None = None
    if edge:
        folder = (log_dir or config.gyre_home() / "predictions").resolve()
        edge_spec = {
            "store": str(folder / "store"),
            "sync_to": sync_to,
            "sync_interval": 60.0 if sync_interval is None else sync_interval,
        }
        if log:
            spool = str((spool_dir or folder / "spool").resolve())
            _check_writable(Path(spool), "--spool-dir" if spool_dir else "--log-dir")
            _check_writable(folder / "store", "--log-dir")
    elif log:
        spool = str((spool_dir or Path(config.get("GYRE_SPOOL_DIR"))).resolve())
        _check_writable(Path(spool), "--spool-dir" if spool_dir else "GYRE_SPOOL_DIR")
    if reload_interval is None:  # follow alias moves by default; a bundle has no registry
        reload_interval = 0.0 if edge else DEFAULT_RELOAD_INTERVAL_S
    tracking = config.resolve("GYRE_TRACKING_URI", tracking_uri).value
    challengers: list[dict[str, Any]] = []
    if edge:
        assert bundle is not None
        # Edge mode opens nothing of the tracking server: no registry, no store (unless
        # --auth asks for the token store).
        specs = [resolve_bundle(bundle, version=version)]
        use_auth, active = False, list[Any]()
        if auth:
            use_auth, active = _registry_auth(tracking, auth)
    else:
        from gyre.registry import Registry

        registry = Registry(tracking)
        try:
            specs = [resolve_model(uri, name=name, registry=registry, version=version)
                     for name, uri in map(_split_name, uris or [])]  # fmt: skip
            challengers = _challengers(specs, canary, shadow, registry)
            use_auth, active = _auth_state(registry, auth)
        finally:
            registry.close()
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise InvalidArgument(
                f"model name {name!r} is served twice", hint="serve one of them as OTHER=URI"
            )
    if not use_auth and not _is_loopback(host):
        raise InvalidArgument(
            f"refusing to listen on {host!r} without auth",
            hint="create a token with `gyre tokens create NAME --scope predict` and start "
            + (
                "again with --auth (an edge box reads tokens only when asked)"
                if edge
                else "again (auth is then on by default)"
            )
            + ", or listen on 127.0.0.1",
        )

    spec = {
        "models": [
            {"name": s.name, "version": s.version, "path": s.path, "source": s.source}
            for s in specs
        ],
        "challengers": challengers,
        "reload_interval": reload_interval,
        "edge": edge_spec,
        "batching": {
            "max_batch_size": max_batch_size,
            "max_latency_ms": max_latency_ms,
            "max_queue_rows": max_queue_rows,
        },
        "limits": {
            "request_timeout_s": timeout,
            "max_request_bytes": max_request_bytes,
            "max_inflight_bytes": max_inflight_bytes,
            "shadow_cpu": shadow_cpu,
        },
        "auth": use_auth,
        "tracking_uri": tracking,
        "spool_dir": spool,
        "access_log": access_log,
    }
    compact_nice, compact_interval = 0, 0.0
    if spool:
        # Read here, where a bad value gets the CLI's one-line error, not in every worker.
        compact_nice = config.get_int("GYRE_COMPACT_NICE")
        if not 0 <= compact_nice <= 19:
            raise InvalidArgument(
                f"GYRE_COMPACT_NICE={compact_nice} is not a niceness from 0 to 19",
                hint="10 (the default) lets the workers go first; 0 gives them equal priority",
            )
        compact_interval = config.get_positive_float("GYRE_COMPACT_INTERVAL_S")
        sync_ms = config.get_int("GYRE_SPOOL_SYNC_MS")
        if sync_ms < 1:
            raise InvalidArgument(
                f"GYRE_SPOOL_SYNC_MS={sync_ms} must be at least 1",
                hint="milliseconds between the spool's fsyncs, e.g. 100",
            )
        spec["log"] = {"sync_interval_ms": sync_ms, "compact_interval_s": compact_interval}

    err = Console(stderr=True)
    if use_auth and not active:
        _announce(
            err,
            "[yellow]auth is on but no active token exists: every request will get 401 until "
            "you run `gyre tokens create NAME --scope predict`[/yellow]",
            logging.WARNING,
        )
    served = ", ".join(f"{s.name} v{s.version}" for s in specs)
    for c in challengers:
        share = f" {c['percent']:g}%" if c["mode"] == "canary" else ""
        served += f" ({c['mode']}{share}: v{c['version']})"
    extras = ""
    if reload_interval:
        extras += f", alias reload every {reload_interval:g} s"
    if edge:
        extras += ", edge mode" + (f", sync to {sync_to}" if sync_to else "")
    # Port 0: the OS picks one when uvicorn binds, after this line; uvicorn's
    # "Uvicorn running on" log line then names it.
    where = f"[bold]http://{_url_host(host)}:{port}[/bold]"
    if not port:
        where = f"[bold]http://{_url_host(host)}[/bold], a free port"
        where += " (see 'Uvicorn running on' below)"
    _announce(
        err,
        f"gyre serve on {where}: {served} "
        f"(auth {'on' if use_auth else 'off'}, {workers} worker{'s' if workers > 1 else ''}, "
        f"batches up to {max_batch_size} rows, log {'on' if spool else 'off'}{extras})",
    )
    os.environ["GYRE_TRACKING_URI"] = tracking
    metrics_dir = control_dir = None
    if workers > 1:  # counters and histograms summed over the workers
        metrics_dir = tempfile.mkdtemp(prefix="gyre-serve-metrics-")
        os.environ[_MULTIPROC_ENV] = metrics_dir
        # admin requests every worker must take (POST /admin/reload), see gyre.serving._peers
        control_dir = tempfile.mkdtemp(prefix="gyre-serve-control-")
        spec["control"] = {"dir": control_dir, "workers": workers}
    os.environ[_SPEC_ENV] = json.dumps(spec)
    compactor = None
    if spool:
        from gyre.predictions._compactor import CompactorProcess

        # One process compacts the workers' spool files, at a lower CPU priority (see there).
        store = edge_spec["store"] if edge_spec is not None else None
        compactor = CompactorProcess(
            spool, store, interval_s=compact_interval, nice=compact_nice, log_format="json"
        )
        compactor.start()
    settings: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": HOLDING_PROTOCOL,
        "lifespan": "on",
        "log_config": _LOG_CONFIG,
        "access_log": False,
        "timeout_graceful_shutdown": max(30, int(timeout) + 5),
        "timeout_keep_alive": 5,
        "env_file": None,
        "server_header": False,
    }
    try:
        _listen.run(_APP_FACTORY, **settings)  # uvicorn, each worker on its own socket
    finally:
        if compactor is not None:
            compactor.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop(_MULTIPROC_ENV, None)
        if control_dir is not None:
            shutil.rmtree(control_dir, ignore_errors=True)


def _check_mode(
    uris: list[str],
    edge: bool,
    canary: str | None,
    shadow: str | None,
    reload_interval: float | None,
    log_dir: Path | None,
    sync_to: str | None,
    log: bool,
    version: int | None,
) -> None:
    """Refuse flag combinations that cannot mean anything, naming them."""
    if edge and uris:
        raise InvalidArgument(
            f"--bundle serves the bundle alone; got model URIs too: {' '.join(uris)!r}",
            hint="serve either --bundle FILE or model URIs",
        )
    if not edge and not uris:
        raise InvalidArgument("nothing to serve", hint="give a model URI, or --bundle FILE")
    if canary and shadow:
        raise InvalidArgument(
            f"--canary {canary!r} and --shadow {shadow!r} both name a challenger",
            hint="a model has one challenger: a canary or a shadow",
        )
    if version is not None and len(uris) > 1:
        raise InvalidArgument(
            f"--version {version} is ambiguous with {len(uris)} models",
            hint="serve one folder, run or bundle with --version",
        )
    if edge:
        for flag, value in (("--canary", canary), ("--shadow", shadow)):
            if value:
                raise InvalidArgument(
                    f"{flag} {value!r} needs the registry; edge mode (--bundle) has none",
                    hint="serve models:/NAME@ALIAS to use a challenger",
                )
        if reload_interval:
            raise InvalidArgument(
                f"--reload-interval {reload_interval:g} follows registry aliases; edge mode "
                "(--bundle) has no registry",
                hint="ship a new bundle and restart to change versions",
            )
        if sync_to and not log:
            raise InvalidArgument(
                f"--sync-to {sync_to!r} with --no-log: there is no prediction log to sync",
                hint="drop --no-log",
            )
        return
    for flag, value in (("--log-dir", str(log_dir) if log_dir else None), ("--sync-to", sync_to)):
        if value:
            raise InvalidArgument(
                f"{flag} {value!r} is for edge mode (--bundle FILE)",
                hint="a server with a registry logs to GYRE_ARTIFACT_URI directly",
            )


def _check_listen(host: str, port: int, workers: int) -> None:
    """Fail now, in one line, where uvicorn would fail to listen on ``host:port`` once the
    models are loaded: bind the socket(s) it will bind, as it binds them, and close them.

    Each bind sets SO_REUSEADDR, as uvicorn's do: a port held only by the closed
    connections of a server just stopped (TIME_WAIT) passes, one something listens on
    does not. Whatever takes the port between this check and uvicorn's bind still gets
    uvicorn's own error."""
    import contextlib
    import errno
    import socket

    from gyre.serving._listen import address_family

    if not 0 <= port <= 65535:
        raise InvalidArgument(
            f"--port {port} is not a TCP port",
            hint="use a number from 1 to 65535, or 0 for any free port",
        )
    where = f"{_url_host(host)}:{port}"
    addresses: list[tuple[int, Any]]
    try:
        if workers > 1:  # the supervisor binds one socket (see gyre.serving._listen)
            # (without SO_REUSEPORT: a port another server shares that way is refused, where
            # the workers' own sockets would join it and split its connections with it)
            addresses = [(address_family(host), (host, port))]
        else:  # the worker's loop binds every address of the host (loop.create_server)
            found = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            addresses = list(dict.fromkeys((info[0], info[4]) for info in found))
        with contextlib.ExitStack() as stack:
            for af, address in addresses:
                sock = stack.enter_context(socket.socket(af, socket.SOCK_STREAM))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if af == socket.AF_INET6 and workers == 1:  # as create_server does
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, socket.gaierror):
            message = f"cannot listen on {host!r}: {reason}"
            hint = "give --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        elif exc.errno == errno.EADDRINUSE:
            message = f"cannot listen on {where}: the port is already in use"
            hint = f"pick another --port (0: any free port), or stop what listens on {where}"
        elif exc.errno == errno.EACCES:
            message = f"cannot listen on {where}: {reason}"
            hint = "ports below 1024 need privileges; pick --port 1024 or above"
        else:
            message = f"cannot listen on {where}: {reason}"
            hint = "give --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        raise InvalidArgument(message, hint=hint) from None


def _check_writable(folder: Path, source: str) -> None:
    """Create ``folder`` and write and remove a file in it, or fail naming it and
    ``source`` (the flag or setting it comes from)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gyre-serve-", suffix=".probe", dir=folder)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot write the prediction log to {str(folder)!r}: {exc.strerror or exc}",
            hint=f"point {source} at a folder this user can write, or serve with --no-log",
        ) from None


def _check_sync_to(uri: str) -> None:
    """``--sync-to`` checked as ``gyre sync --to`` checks it: the artifact store the URI
    names can be opened (a known scheme, a well-formed URI); nothing is contacted."""
    from gyre.artifacts import close_artifact_store, open_artifact_store
    from gyre.cli._predictions_cmds import check_central

    check_central(uri, "--sync-to")
    try:
        store = open_artifact_store(uri)
    except InvalidArgument as exc:
        raise InvalidArgument(f"--sync-to: {exc.message}", hint=exc.hint) from None
    close_artifact_store(store)


def _challengers(
    specs: list[Any], canary: str | None, shadow: str | None, registry: Any
) -> list[dict[str, Any]]:
    """The challenger of every registry model, resolved (a missing alias fails here)."""
    from gyre.serving import resolve_model

    if not canary and not shadow:
        return []
    if canary:
        target, percent, mode, flag = *_parse_canary(canary), "canary", f"--canary {canary!r}"
    else:
        assert shadow is not None
        target, percent, mode, flag = shadow, 0.0, "shadow", f"--shadow {shadow!r}"
    found = []
    for spec in specs:
        uri = _challenger_uri(spec.source, target)
        if uri is None:
            continue
        c = resolve_model(uri, name=spec.name, registry=registry)
        found.append({"name": c.name, "version": c.version, "path": c.path, "source": c.source,
                      "mode": mode, "percent": percent})  # fmt: skip
    if not found:
        raise InvalidArgument(
            f"{flag} needs a registry model to challenge; none is served",
            hint="serve models:/NAME@ALIAS",
        )
    return found


def _registry_auth(tracking: str, flag: bool | None) -> tuple[bool, list[Any]]:
    from gyre.registry import Registry

    registry = Registry(tracking)
    try:
        return _auth_state(registry, flag)
    finally:
        registry.close()


def _auth_state(registry: Any, flag: bool | None) -> tuple[bool, list[Any]]:
    """Whether auth is on, and the active tokens (auth needs a store that keeps them)."""
    list_tokens = getattr(registry.store, "list_tokens", None)
    if not callable(list_tokens) or not callable(getattr(registry.store, "verify_token", None)):
        if flag:
            raise InvalidArgument(
                f"auth needs a tracking store that keeps API tokens; "
                f"{registry.tracking_uri!r} does not",
                hint="point --tracking-uri at the sqlite:/// or postgresql:// database",
            )
        return False, []
    active = [t for t in list_tokens() if t.active]
    return (bool(active) if flag is None else flag), active


def predict(
    uri: Annotated[
        str,
        typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/... or a folder."),
    ],
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="CSV, JSON Lines or Parquet file (by suffix).", show_default=False
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Where to write the scored file (by suffix)."),
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per chunk.")] = 10_000,
    proba: Annotated[
        bool, typer.Option("--proba", help="Add a proba_CLASS column per class.")
    ] = False,
    engine: Annotated[
        str, typer.Option(help="local, or ray: Ray Data over Parquet (gyreml[ray], RAY_ADDRESS).")
    ] = "local",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (no progress bar).")
    ] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Score a file with a model, in chunks (bounded memory), with a progress bar.

    The output holds the input's columns plus prediction (and, with --proba, one
    proba_CLASS column per class).

    Example: gyre predict models:/churn@champion -i customers.parquet -o scored.parquet --proba
    """
    if engine != "local":
        from gyre.pipelines._ray_batch import predict_command

        return predict_command(uri, input, output, engine, batch_size, proba, tracking_uri)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from gyre.registry import Registry
    from gyre.serving.batch import ModelFailed, format_for_path, score_file

    fmt = format_for_path(input)
    format_for_path(output)
    if not input.is_file():
        raise InvalidArgument(f"input file {str(input)!r} does not exist")
    registry = Registry(config.get("GYRE_TRACKING_URI", tracking_uri))
    try:
        model = registry.load_model(uri)
    finally:
        registry.close()
    total = _count_lines(input, header=fmt == "csv") if fmt != "parquet" else None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            total = pq.ParquetFile(input).metadata.num_rows
        except (OSError, ValueError) as exc:  # (pyarrow's ArrowInvalid is a ValueError)
            raise InvalidArgument(
                f"cannot read the input as parquet: {exc}",
                hint=f"check that {str(input)!r} is a Parquet file (its suffix says it is)",
            ) from None

    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]scoring[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=json_output or not err.is_terminal,  # (a log file gets the summary line)
    ) as progress:
        task = progress.add_task("scoring", total=total, rate="")
        started = time.perf_counter()
        done = 0

        def advance(rows: int) -> None:
            nonlocal done
            done += rows
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=rows, rate=f"{rate:,.0f} rows/s")

        try:
            stats = score_file(
                model, input, output, batch_size=batch_size, proba=proba, progress=advance
            )
        except ModelFailed as exc:  # the model's own predict raised: its words, no traceback
            cause = exc.__cause__
            raise GyreError(
                f"the model failed on rows {exc.first}-{exc.last} of {str(input)!r} "
                f"({type(cause).__name__}: {cause})",
                hint="nothing was written; call the model's predict on those rows in Python "
                "to see where it fails",
            ) from None
    if json_output:
        typer.echo(json.dumps({"rows": stats.rows, "seconds": round(stats.seconds, 3),
                               "rows_per_second": round(stats.rows_per_second, 1),
                               "output": str(output)}))  # fmt: skip
        return
    err.print(
        f"scored {stats.rows:,} rows in {stats.seconds:.2f} s "
        f"({stats.rows_per_second:,.0f} rows/s) -> {output}"
    )


def _announce(err: Console, message: str, level: int = logging.INFO) -> None:
    """A line of ``gyre serve``'s start: rich text for a person at a terminal; otherwise
    (a log collector reading standard error) one JSON log line like every other line the
    server writes there, unwrapped."""
    if err.is_terminal:
        err.print(message)
        return
    from rich.text import Text

    from gyre._jsonlog import JsonFormatter

    plain = Text.from_markup(message).plain
    record = logging.LogRecord("gyre.serving", level, __file__, 0, plain, None, None)
    sys.stderr.write(JsonFormatter().format(record) + "\n")
    sys.stderr.flush()


def _count_lines(path: Path, *, header: bool) -> int | None:
    """The rows of a CSV or JSON Lines file by its line count, for the progress bar's
    total (a CSV field holding a line break makes it an overcount); None if unreadable."""
    lines = 0
    last = b"\n"
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None
    lines += last != b"\n"  # a last line without its line break
    return max(0, lines - header)

"""``gyre serve`` (the prediction server) and ``gyre predict`` (offline batch scoring).

``gyre serve`` resolves every model URI once, here (a bad URI fails in one clear line, not in
each worker), then starts uvicorn with ``N`` worker processes, uvloop and httptools; each
worker builds the app from ``gyre.serving._entry:app_from_env``, reading what was resolved
from the environment, and loads the models in its start-up. Like ``gyre server``, auth is on
by default as soon as an active API token exists, and the server refuses to listen beyond
loopback without it; requests then need a token with the ``predict`` scope.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gyre import config
from gyre.cli._server_cmds import _is_loopback, _url_host
from gyre.errors import InvalidArgument

__all__ = ["register"]

# Read by gyre.serving._entry (kept as literals: starting the server imports nothing of it).
_APP_FACTORY = "gyre.serving._entry:app_from_env"
_SPEC_ENV = "_GYRE_SERVE_SPEC"
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "gyre.serving._logging.RequestContextFilter"}},
    "formatters": {"json": {"()": "gyre.serving._logging.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request"],
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "gyre": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
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


def serve(
    uris: Annotated[
        list[str],
        typer.Argument(
            help="Models to serve: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH or "
            "a package folder; NAME=URI serves it under another name.",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most rows per predict call (1 turns batching off).")
    ] = 64,
    max_latency_ms: Annotated[
        float, typer.Option(min=0, help="Longest a batch waits for more requests.")
    ] = 2.0,
    max_queue_rows: Annotated[
        int, typer.Option(min=1, help="Rows queued per model before requests get 429.")
    ] = 4096,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a request gets 504.")
    ] = 30.0,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Largest JSON request body (413 past it).")
    ] = 16 * 1024 * 1024,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log every prediction to the spool.")
    ] = True,
    spool_dir: Annotated[
        Path | None,
        typer.Option(help="Prediction-log spool folder. [default: GYRE_HOME/predictions/spool]"),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="One JSON line per request.")
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
) -> None:
    """Serve models over HTTP: Open Inference Protocol v2, /predict, /batch, /metrics."""
    import uvicorn

    from gyre.registry import Registry
    from gyre.serving import resolve_model

    tracking = config.resolve("GYRE_TRACKING_URI", tracking_uri).value
    registry = Registry(tracking)
    try:
        specs = [resolve_model(uri, name=name, registry=registry) for name, uri in map(
            _split_name, uris)]  # fmt: skip
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
            hint="create a token with `gyre tokens create NAME --scope predict` and start again "
            "(auth is then on by default), or listen on 127.0.0.1",
        )

    spool = None
    if log:
        spool = str((spool_dir or config.gyre_home() / "predictions" / "spool").resolve())
    spec = {
        "models": [
            {"name": s.name, "version": s.version, "path": s.path, "source": s.source}
            for s in specs
        ],
        "batching": {
            "max_batch_size": max_batch_size,
            "max_latency_ms": max_latency_ms,
            "max_queue_rows": max_queue_rows,
        },
        "limits": {"request_timeout_s": timeout, "max_request_bytes": max_request_bytes},
        "auth": use_auth,
        "tracking_uri": tracking,
        "spool_dir": spool,
        "access_log": access_log,
    }

    err = Console(stderr=True)
    if use_auth and not active:
        err.print(
            "[yellow]auth is on but no active token exists: every request will get 401 until "
            "you run `gyre tokens create NAME --scope predict`[/yellow]"
        )
    served = ", ".join(f"{s.name} v{s.version}" for s in specs)
    err.print(
        f"gyre serve on [bold]http://{_url_host(host)}:{port}[/bold]: {served} "
        f"(auth {'on' if use_auth else 'off'}, {workers} worker{'s' if workers > 1 else ''}, "
        f"batches up to {max_batch_size} rows, log {'on' if spool else 'off'})"
    )
    os.environ[_SPEC_ENV] = json.dumps(spec)
    os.environ["GYRE_TRACKING_URI"] = tracking
    metrics_dir = None
    if workers > 1:  # counters and histograms summed over the workers
        metrics_dir = tempfile.mkdtemp(prefix="gyre-serve-metrics-")
        os.environ[_MULTIPROC_ENV] = metrics_dir
    try:
        uvicorn.run(
            _APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_config=_LOG_CONFIG,
            access_log=False,
            timeout_graceful_shutdown=max(30, int(timeout) + 5),
            timeout_keep_alive=5,
            env_file=None,
            server_header=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop(_MULTIPROC_ENV, None)


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
    proba: Annotated[bool, typer.Option("--proba", help="Add proba_<class> columns.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Score a file with a model, in chunks (bounded memory), with a progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from gyre.registry import Registry
    from gyre.serving.batch import format_for_path, score_file

    fmt = format_for_path(input)
    format_for_path(output)
    if not input.is_file():
        raise InvalidArgument(f"input file {str(input)!r} does not exist")
    registry = Registry(config.get("GYRE_TRACKING_URI", tracking_uri))
    try:
        model = registry.load_model(uri)
    finally:
        registry.close()
    total = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(input).metadata.num_rows

    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]scoring[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("scoring", total=total)
        stats = score_file(
            model,
            input,
            output,
            batch_size=batch_size,
            proba=proba,
            progress=lambda rows: progress.advance(task, rows),
        )
    err.print(
        f"scored {stats.rows:,} rows in {stats.seconds:.2f} s "
        f"({stats.rows_per_second:,.0f} rows/s) -> {output}"
    )

"""``gyre monitor report``: data and prediction drift of a model's prediction log."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from gyre import config
from gyre.cli._options import ArtifactUri, TrackingUri
from gyre.cli._output import console, print_json
from gyre.cli._predictions_cmds import parse_moment
from gyre.errors import InvalidArgument, NotFound

__all__ = ["register"]

monitor_app = typer.Typer(
    help="Watch deployed models: drift of their inputs and outputs against the reference.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``gyre monitor ...`` to ``app``."""
    app.add_typer(monitor_app, name="monitor")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InvalidArgument(
                f"{flag} {item!r} is not COLUMN=VALUE", hint=f"e.g. {flag} age=ks"
            )
        out[key] = value
    return out


def _reference(registry: Any, name: str, version: int) -> Any:
    from gyre.models._manifest import MANIFEST_FILE, ModelManifest
    from gyre.models._profile import ReferenceProfile

    path = Path(registry.download(f"models:/{name}/{version}"))
    manifest = ModelManifest.read(path / MANIFEST_FILE)
    if manifest.reference_profile is None:
        raise NotFound(
            f"model {name!r} version {version} has no reference profile",
            hint="log the model with reference_data=X_train (gyre.log_model)",
        )
    return ReferenceProfile.load(path / manifest.reference_profile)


@monitor_app.command("report")
def report_command(
    model: Annotated[
        str,
        typer.Argument(
            help="`models:/<name>@<alias>` or `models:/<name>/<version>` (its reference "
            "profile is the baseline)",
            show_default=False,
        ),
    ],
    window: Annotated[str, typer.Option(help="Length of each window: 1h, 1d, 1w, ...")] = "1d",
    rows: Annotated[
        int | None, typer.Option(help="Windows of this many rows instead of --window.")
    ] = None,
    since: Annotated[
        str, typer.Option(help="Start: a duration back from now (7d) or an ISO time.")
    ] = "7d",
    until: Annotated[str | None, typer.Option(help="End (exclusive) [default: now].")] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test",
            help="COLUMN=TEST (ks, chisquare, z, wasserstein, jensenshannon, psi, hellinger), "
            "or TEST for every column; repeatable.",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="COLUMN=VALUE, or VALUE for every column."),
    ] = None,
    drift_share: Annotated[
        float, typer.Option(help="Dataset drift when at least this share of columns drift.")
    ] = 0.5,
    min_count: Annotated[
        int, typer.Option(help="Fewer values in a window is 'not enough data'.")
    ] = 30,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Columns profiled in parallel [default: CPU count].")
    ] = 0,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="Score this Parquet file, folder or URI of the model's inputs as one window, "
            "instead of the prediction log.",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="With --input: local, or ray (its blocks profiled on Ray, merged)."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: ray://HOST:10001, HOST:6379 or auto [default: "
            "RAY_ADDRESS, else a local Ray].",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    artifact_uri: ArtifactUri = None,
) -> None:
    """Drift of a model's inputs (against its reference profile) and outputs (against
    the first window) per window of its prediction log, and over the whole range; or,
    with --input, of a Parquet window (--engine ray for one larger than this machine).

    Example: gyre monitor report models:/churn@champion --window 1d --since 7d --html drift.html
    """
    from gyre.artifacts import close_artifact_store, open_artifact_store
    from gyre.cli._predictions_cmds import _resolve_model
    from gyre.monitoring import MonitorReport, drift_over_time, log_windows, parse_duration
    from gyre.registry import Registry

    if input is None and engine != "local":
        raise InvalidArgument(
            f"--engine {engine} scores a Parquet window; the prediction log is read here",
            hint="give --input data.parquet (or a folder) with --engine ray",
        )
    if input is not None and (rows is not None or until is not None):
        raise InvalidArgument(
            "--input is one window: --rows and --until do not apply",
            hint="split the input into files and report each, or leave --rows/--until out",
        )
    now = datetime.now(UTC)
    start = parse_moment(since, "--since", now)
    end = parse_moment(until, "--until", now) if until is not None else now
    every = None if rows is not None else parse_duration(window, "--window")
    options = _options(test or [], threshold or [], drift_share, min_count)
    tracking = config.get("GYRE_TRACKING_URI", tracking_uri)
    name, version = _resolve_model(model, tracking)
    registry = Registry(tracking, artifact_uri)
    try:
        if version is None:
            from gyre.registry import ModelRef

            version = registry.resolve_version(ModelRef("registry", model, name=name)).version
        reference = _reference(registry, name, version)
    finally:
        registry.close()
    n_workers = workers or os.cpu_count() or 1
    if input is not None:
        _input_report(
            name,
            version,
            reference,
            input,
            options,
            engine,
            address,
            n_workers,
            json_output,
            html_file,
        )
        return
    store = open_artifact_store(config.artifact_uri_for(tracking, artifact_uri))
    try:
        with _progress(quiet=json_output) as tick:
            windows, outputs_ref = log_windows(
                store,
                name,
                reference,
                version=version,
                since=start,
                until=end,
                every=every,
                rows=rows,
                workers=n_workers,
                progress=tick("profiling windows"),
            )
            per_window, overall = drift_over_time(
                reference,
                windows,
                options,
                outputs_reference=outputs_ref,
                workers=n_workers,
                progress=tick("scoring"),
            )
    finally:
        close_artifact_store(store)
    report = MonitorReport(
        name, version, window if rows is None else f"{rows} rows", per_window, overall
    )
    _emit(report, json_output, html_file)


def _input_report(
    name: str,
    version: int,
    reference: Any,
    source: str,
    options: Any,
    engine: str,
    address: str | None,
    workers: int,
    json_output: bool,
    html_file: Path | None,
) -> None:
    """``--input``: the Parquet window scored against the reference (no prediction drift:
    there is no baseline window), on this machine or on Ray."""
    from gyre.monitoring import MonitorReport, WindowDrift
    from gyre.pipelines._ray_drift import score_parquet_drift

    features = score_parquet_drift(
        reference, source, options, engine=engine, address=address, workers=workers
    )
    overall = WindowDrift(None, None, features.rows, features, None)
    _emit(MonitorReport(name, version, f"input {source}", [], overall), json_output, html_file)


def _emit(report: Any, json_output: bool, html_file: Path | None) -> None:
    if html_file is not None:
        from gyre.monitoring import render_html

        html_file.write_text(render_html(report), encoding="utf-8")
    if json_output:
        print_json(report.to_dict())
        return
    _print(report)
    if html_file is not None:
        console.print(f"wrote {escape(str(html_file))}")


def _options(tests: list[str], thresholds: list[str], share: float, min_count: int) -> Any:
    from gyre.monitoring import DriftOptions

    one_test = [t for t in tests if "=" not in t]
    one_threshold = [t for t in thresholds if "=" not in t]
    if len(one_test) > 1 or len(one_threshold) > 1:
        raise InvalidArgument(
            f"more than one test or threshold for every column: {one_test + one_threshold}",
            hint="give COLUMN=VALUE for per-column choices",
        )
    try:
        per_threshold = {
            k: float(v)
            for k, v in _pairs([t for t in thresholds if "=" in t], "--threshold").items()
        }
        threshold = float(one_threshold[0]) if one_threshold else None
    except ValueError:
        raise InvalidArgument(
            f"--threshold {thresholds!r} holds a value that is not a number", hint="e.g. 0.1"
        ) from None
    return DriftOptions(
        test=one_test[0] if one_test else None,
        threshold=threshold,
        tests=_pairs([t for t in tests if "=" in t], "--test"),
        thresholds=per_threshold,
        drift_share=share,
        min_count=min_count,
    )


class _progress:
    """A rich progress bar on stderr (when it is a terminal and not quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)

    def __enter__(self) -> Any:
        if self.bar is not None:
            self.bar.start()

        def tick(label: str) -> Any:
            if self.bar is None:
                return None
            task = self.bar.add_task(label, total=None)
            return lambda done, total: self.bar.update(task, completed=done, total=total)

        return tick

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print(report: Any) -> None:
    span = f"windows of {report.window}" if report.windows else report.window
    title = f"drift of {report.model} v{report.version} · {span}"
    grid = Table(
        "window",
        "rows",
        "features drifted",
        "dataset drift",
        "prediction drift",
        title=escape(title),
    )
    for w in [*report.windows, *([report.overall] if report.overall else [])]:
        f = w.features
        label = (
            "whole range"
            if w is report.overall
            else (f"{w.start:%Y-%m-%d %H:%M}" if w.start else f"{w.rows} rows")
        )
        preds = (
            "baseline"
            if w.baseline
            else "-"
            if w.predictions is None
            else _flag(w.predictions.dataset_drift)
        )
        grid.add_row(
            label, str(w.rows), f"{len(f.drifted)}/{len(f.tested)}", _flag(f.dataset_drift), preds
        )
    console.print(grid)
    if report.overall is None:
        console.print("no predictions in this range")
        return
    cols = Table(
        "column", "test", "statistic", "threshold", "verdict", title="whole range, per column"
    )
    for name, c in report.overall.features.columns.items():
        cols.add_row(
            escape(name),
            c.test or "-",
            "-" if c.statistic is None else f"{c.statistic:.4g}",
            "-" if c.threshold is None else f"{c.threshold:g}",
            _flag(c.drift) if c.status == "ok" else f"[dim]{escape(c.reason or c.status)}[/]",
        )
    console.print(cols)


def _flag(value: bool | None) -> str:
    return (
        "[dim]not enough data[/]"
        if value is None
        else ("[bold red]drift[/]" if value else "[green]no[/]")
    )

"""``gyre predictions query`` and ``gyre sync``: the prediction log from the command line."""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from gyre import config
from gyre.artifacts import ArtifactStore, close_artifact_store, open_artifact_store
from gyre.cli._options import ArtifactUri, TrackingUri
from gyre.cli._output import console, number, print_json
from gyre.errors import (
    BackendUnavailable,
    Forbidden,
    GyreError,
    InvalidArgument,
    NotFound,
    Unauthorized,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["parse_moment", "register"]

predictions_app = typer.Typer(
    help="Read the prediction log: what models were asked, answered, and the labels that came.",
    no_args_is_help=True,
)

_MODEL = re.compile(r"^(?:models:/)?([^/@]+)(?:/(\d+)|@([A-Za-z_][A-Za-z0-9_\-]*))?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_LISTED = 10  # names (or versions) listed in a hint


def register(app: typer.Typer) -> None:
    """Add ``gyre predictions ...`` and ``gyre sync`` to ``app``."""
    app.add_typer(predictions_app, name="predictions")
    app.command("sync")(sync_command)


# -- gyre predictions query ----------------------------------------------------------------


@predictions_app.command("query")
def query_command(
    model: Annotated[
        str,
        typer.Argument(
            help="`models:/<name>` (every version), `models:/<name>/<version>` or "
            "`models:/<name>@<alias>`",
            show_default=False,
        ),
    ],
    since: Annotated[
        str, typer.Option(help="Start: a duration back from now (30m, 1h, 2d) or ISO time.")
    ] = "1h",
    until: Annotated[
        str | None,
        typer.Option(
            help="End (exclusive), same forms [default: none: rows stamped later than now, "
            "by a box whose clock runs ahead, are shown too]."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown (the newest); totals count all.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write every row to this CSV file.")
    ] = None,
    tracking_uri: TrackingUri = None,
    artifact_uri: ArtifactUri = None,
) -> None:
    """Show logged predictions of a model in a time window, with totals and label coverage.

    Example: gyre predictions query models:/churn@champion --since 2h --limit 50
    """
    from gyre.predictions import feedback_coverage, query

    if limit < 0:
        raise InvalidArgument(f"--limit {limit!r} is negative", hint="use 0 or more")
    now = datetime.now(UTC)
    start = parse_moment(since, "--since", now)
    end = parse_moment(until, "--until", now) if until is not None else None
    tracking = config.get("GYRE_TRACKING_URI", tracking_uri)
    name, version = _resolve_model(model, tracking)
    store = open_artifact_store(config.artifact_uri_for(tracking, artifact_uri))
    try:
        table = query(store, name, version=version, since=start, until=end)
        # Unless the registry resolved it, a typo would read as "no traffic yet".
        if not table.num_rows and _parse_model(model)[2] is None:
            _check_known(store, name, version, tracking)
        coverage = feedback_coverage(store, name, version=version, since=start, until=end)
    finally:
        close_artifact_store(store)
    if csv_file is not None:
        _write_csv(table, csv_file)
    summary = _summary(table)
    shown = table.slice(max(table.num_rows - limit, 0)) if limit else table.slice(0, 0)
    if json_output:
        print_json(
            {
                "model": name,
                "version": version,
                "since": start.isoformat(),
                "until": end.isoformat() if end else None,
                **summary,
                "coverage": coverage.to_dict(),
                "rows": _json_rows(shown),
                "csv": str(csv_file) if csv_file else None,
            }
        )
        return
    _print_table(shown, name, version)
    window = f"{start:%Y-%m-%d %H:%M:%S} .. {f'{end:%Y-%m-%d %H:%M:%S}' if end else 'now'} UTC"
    console.print(
        f"[bold]{summary['total']}[/] predictions in {window}"
        + (f" · versions {', '.join(map(str, summary['versions']))}" if summary["versions"] else "")
        + (
            f" · latency p50 {number(summary['latency_ms']['p50'])} ms,"
            f" p95 {number(summary['latency_ms']['p95'])} ms"
            if summary["total"]
            else ""
        )
    )
    share = "-" if coverage.coverage is None else f"{coverage.coverage:.1%}"
    console.print(
        f"labelled {coverage.labelled}/{coverage.predictions} ({share})"
        f" · labels matching no prediction: {coverage.unknown_labels}"
    )
    if csv_file is not None:
        console.print(f"wrote {table.num_rows} rows to {escape(str(csv_file))}")


def parse_moment(text: str, option: str, now: datetime) -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` back from ``now``, or an ISO timestamp (UTC unless it
    says otherwise); InvalidArgument naming ``option`` and the value otherwise.

    >>> parse_moment("2024-01-05T10:00", "--since", datetime.now(UTC)).isoformat()
    '2024-01-05T10:00:00+00:00'
    """
    # The log holds nothing before 1970 (its times are milliseconds since then): a moment
    # further back, however far (--since 99999999d), means "from the start".
    # An --until that early leaves nothing to show: an error naming it.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    m = _DURATION.match(text)
    if m:
        back = float(m.group(1)) * _UNITS[m.group(2)]  # (at most back to 1970)
        moment = now - timedelta(seconds=min(back, (now - epoch).total_seconds()))
    else:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InvalidArgument(
                f"{option} {text!r} is neither a duration nor an ISO timestamp",
                hint="e.g. 30m, 1h, 2d, 1w or 2024-01-05T10:00:00Z",
            ) from None
        parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        try:
            moment = max(epoch, parsed)
        except OverflowError:  # (an offset pushing 0001-01-01 before year 1)
            moment = epoch
    if option == "--until" and moment <= epoch:
        raise InvalidArgument(
            f"--until {text!r} is not after 1970-01-01, where the prediction log's time starts",
            hint="give a later --until, or leave it out",
        )
    return moment


def _parse_model(text: str) -> tuple[str, int | None, str | None]:
    """The model name, version (None: every version) and alias ``text`` names."""
    m = _MODEL.match(text.strip())
    if not m:
        raise InvalidArgument(
            f"model {text!r} is not models:/<name>, models:/<name>/<version> "
            "or models:/<name>@<alias>",
            hint="e.g. models:/churn@champion",
        )
    return m.group(1), int(m.group(2)) if m.group(2) else None, m.group(3)


def _resolve_model(text: str, tracking_uri: str) -> tuple[str, int | None]:
    """The model name and version (None: every version) ``text`` names, an alias resolved
    through the registry."""
    name, version, alias = _parse_model(text)
    if alias is None:
        return name, version
    from gyre.registry import ModelRef, Registry

    registry = Registry(tracking_uri)
    try:
        found = registry.resolve_version(ModelRef("registry", text, name=name, alias=alias))
    finally:
        registry.close()
    return name, found.version


def _check_known(store: ArtifactStore, name: str, version: int | None, tracking_uri: str) -> None:
    """NotFound unless ``name`` (and ``version``) has predictions or labels in the log or
    is registered: an empty table would say "no traffic yet" for a misspelled name."""
    from gyre.predictions._layout import KINDS, models_in, versions_in

    logged = sorted({m for kind in KINDS for m in models_in(store, kind)})
    registered: list[int] | None = None  # registered versions; None: not registered
    if name not in logged:
        registered, unreachable = _registered_versions(name, tracking_uri)
        if registered is None:
            raise NotFound(
                f"no model {name!r} in {_where(unreachable)}",
                hint=_names_hint(name, logged, store),
            )
    if version is None:
        return
    versions = versions_in(store, name)
    if version in versions:
        return
    unreachable = None
    if registered is None:
        registered, unreachable = _registered_versions(name, tracking_uri)
    if registered is not None and version in registered:
        return
    held = (
        f"versions logged: {_listing([str(v) for v in reversed(versions)])}"
        if versions
        else "no version of it is logged yet"
    )
    if registered:
        held += f"; registered: {_listing([str(v) for v in reversed(registered)])}"
    raise NotFound(
        f"model {name!r} has no version {version} in {_where(unreachable)}",
        hint=f"{held}; models:/{name} reads every version",
    )


def _where(unreachable: str | None) -> str:
    if unreachable:
        return f"the prediction log, and the registry could not be asked ({unreachable})"
    return "the prediction log or the registry"


def _registered_versions(name: str, tracking_uri: str) -> tuple[list[int] | None, str | None]:
    """The registered versions of ``name`` (None: no such registered model) and, when the
    registry could not be asked, why."""
    from gyre.registry import Registry

    registry = Registry(tracking_uri)
    try:
        return sorted(v.version for v in registry.versions(name)), None
    except NotFound:
        return None, None
    except (BackendUnavailable, Unauthorized, Forbidden) as exc:
        return None, exc.message
    finally:
        registry.close()


def _names_hint(name: str, logged: list[str], store: ArtifactStore) -> str:
    if not logged:
        return (
            f"nothing is logged in the artifact store {store.uri!r} yet; "
            "--artifact-uri names the store that holds the prediction log"
        )
    closest = difflib.get_close_matches(name, logged, n=len(logged), cutoff=0.0)
    guess = difflib.get_close_matches(name, logged, n=1)
    mean = f"did you mean models:/{guess[0]}? " if guess else ""
    return f"{mean}the log holds {_listing(closest)}"


def _listing(items: list[str], limit: int = _LISTED) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def _summary(table: pa.Table) -> dict[str, Any]:
    import pyarrow.compute as pc

    total = table.num_rows
    if not total:
        return {"total": 0, "versions": [], "latency_ms": {"p50": None, "p95": None}}
    p50, p95 = pc.quantile(table.column("latency_ms"), q=[0.5, 0.95]).to_pylist()
    versions = sorted(pc.unique(table.column("version")).to_pylist())
    return {"total": total, "versions": versions, "latency_ms": {"p50": p50, "p95": p95}}


def _print_table(table: pa.Table, name: str, version: int | None) -> None:
    """The rows as a table that fits the terminal, no cell cut short: the columns saying
    which prediction a row is, then the label, outputs and inputs as far as they fit whole;
    the columns left out are named below it (``--json`` and ``--csv`` hold every one)."""
    rows = table.to_pylist()
    if not rows:  # the totals below say so
        return
    names = table.column_names
    days = {row["timestamp"].date() for row in rows}
    title = f"predictions of {name}" + (f" v{version}" if version is not None else "")
    if len(days) == 1:  # the day once, in the title; the rows say the time
        title += f" on {next(iter(days)):%Y-%m-%d} (UTC)"
    stamp = "%H:%M:%S.%f" if len(days) == 1 else "%Y-%m-%d %H:%M:%S.%f"
    inputs = [n for n in names if n.startswith("in_")]
    outputs = [n for n in names if n.startswith("out_")]
    order = ["timestamp", "request_id", "version", "variant", "latency_ms", *inputs, *outputs]
    order.append("label")
    headers = {"timestamp": "time", "request_id": "request", "version": "v", "latency_ms": "ms"}
    cells: dict[str, list[str]] = {}
    for column in order:
        if column in names:
            cells[column] = [
                row[column].strftime(stamp)[:-3] if column == "timestamp" else _cell(row[column])
                for row in rows
            ]
    wanted = ["timestamp", "request_id", "latency_ms"]
    if version is None:  # else the title says it
        wanted.append("version")
    if any(row["variant"] != "primary" for row in rows):
        wanted.append("variant")
    optional = outputs + inputs
    if any(row.get("label") is not None for row in rows):
        optional.insert(0, "label")

    def header(column: str) -> str:
        return headers.get(column, column.removeprefix("in_").removeprefix("out_"))

    def width(column: str) -> int:  # with its padding and one border
        return max(map(cell_len, [header(column), *cells[column]])) + 3

    used = 1 + sum(width(c) for c in wanted)
    left_out = []
    for column in optional:
        if used + width(column) <= console.width:
            wanted.append(column)
            used += width(column)
        else:
            left_out.append(column)
    shown = [c for c in order if c in wanted]
    grid = Table(title=title)
    for column in shown:
        grid.add_column(header(column), overflow="fold")
    for i in range(len(rows)):
        grid.add_row(*(escape(cells[c][i]) for c in shown))
    console.print(grid)
    if left_out:
        listed = _listing([header(c) for c in left_out], limit=30)
        console.print(f"[dim]not shown at this width: {escape(listed)} (--json, --csv show all)[/]")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN: JSON has no word for it
        return None
    return value


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def _write_csv(table: pa.Table, path: Path) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(table.column_names)
            for batch in table.to_batches(10_000):
                for row in batch.to_pylist():
                    writer.writerow(_csv_cell(v) for v in row.values())
    except OSError as exc:
        raise InvalidArgument(
            f"cannot write --csv {str(path)!r}: {exc.strerror or exc}",
            hint="check that the folder exists and is writable",
        ) from None


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(_plain(value))
    return value


# -- gyre sync -----------------------------------------------------------------------------


def sync_command(
    to: Annotated[
        str,
        typer.Option(
            "--to", help="The central artifact store: https://gyre-server, s3://bucket/prefix ..."
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="The local artifact store [default: GYRE_ARTIFACT_URI]",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Repeat every this many seconds until Ctrl-C [default: once]."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Copy the prediction log (segments and labels) of this machine's artifact store into a
    central one. Safe to interrupt and re-run: nothing is copied twice or lost.

    Example: gyre sync --to https://gyre.internal --interval 60
    """
    if interval is not None and not interval > 0:
        raise InvalidArgument(f"--interval {interval:g} must be a positive number of seconds")
    check_central(to, "--to")
    local_uri = config.get("GYRE_ARTIFACT_URI", source)
    local = open_artifact_store(local_uri)
    central = open_artifact_store(to)
    try:
        # (a sync service may start on an edge box before its first compaction makes the
        # store: with --interval a folder that does not exist yet is waited for)
        _check_source(
            local, "--from" if source is not None else "GYRE_ARTIFACT_URI",
            missing_ok=interval is not None or _spool_beside(local) is not None,
        )  # fmt: skip
        while True:
            missing = _not_made_yet(local)
            if missing is not None:  # (with --interval only: else _check_source refused it)
                console.print(
                    f"[dim]waiting for {escape(missing)} to appear (an edge server makes it "
                    f"at its first compaction)[/]"
                )
            else:
                _sync_once(local, central, local_uri, to, interval, json_output)
            if interval is None:
                return
            try:
                time.sleep(interval)  # the pause between passes, not a synchronisation
            except KeyboardInterrupt:
                console.print("[dim]stopped[/]")
                return
    finally:
        close_artifact_store(local)
        close_artifact_store(central)


def _sync_once(
    local: ArtifactStore,
    central: ArtifactStore,
    local_uri: str,
    to: str,
    interval: float | None,
    json_output: bool,
) -> None:
    """One pass of ``gyre sync``: what a stopped server left in the spool, then the store;
    said in a line (or as JSON). Central unreachable: raised, or with ``interval`` said in
    red (the next pass retries)."""
    from gyre.predictions import sync

    try:
        spooled = _compact_spool_beside(local)
        report = sync(local, central)
    except BackendUnavailable as exc:
        if interval is None:
            raise
        console.print(f"[red]{escape(exc.message)}[/] [dim](retrying in {interval:g} s)[/]")
        return
    if json_output:
        print_json({"from": local_uri, "to": to, **report.to_dict(),
                    "spool_rows_compacted": spooled})  # fmt: skip
        return
    if spooled:
        console.print(
            f"compacted {spooled:,} rows left in the spool beside {escape(local_uri)} "
            "(a server stopped before compacting them)"
        )
    console.print(
        f"synced {escape(local_uri)} → {escape(to)}: {report.entries} entries "
        f"in {report.scopes} scopes, {report.blobs} blobs ({report.bytes:,} bytes) uploaded"
    )


def _not_made_yet(local: ArtifactStore) -> str | None:
    """The folder of ``local`` when it does not exist yet and nothing waits in a spool
    beside it, else None."""
    from gyre.artifacts._local import LocalArtifactStore

    if not isinstance(local, LocalArtifactStore) or local.root.exists():
        return None
    return None if _spool_beside(local) is not None else str(local.root)


def _spool_beside(local: ArtifactStore) -> Path | None:
    """The spool folder of the edge server whose store ``local`` is (its ``--log-dir``
    holds ``store`` and ``spool``), when it holds spool files."""
    from gyre.artifacts._local import LocalArtifactStore
    from gyre.predictions._spool import spool_files

    if not isinstance(local, LocalArtifactStore) or local.root.name != "store":
        return None  # (the edge layout only: another server's spool is not this store's)
    spool = local.root.parent / "spool"
    return spool if spool.is_dir() and spool_files(spool) else None


def _compact_spool_beside(local: ArtifactStore) -> int:
    """Compact into ``local`` the spool files an edge server left beside it: a server
    killed, or stopped before its last compaction, leaves answered predictions there, which
    a sync of the store alone would never carry. Files a running server still holds are
    left to it. The rows compacted."""
    from gyre.predictions._log import Compaction, compact_folder

    spool = _spool_beside(local)
    if spool is None:
        return 0
    if not os.access(spool, os.W_OK):  # (compacting takes its files)
        console.print(
            f"[yellow]the spool {escape(str(spool))} holds predictions not compacted yet, "
            "and this user cannot write it[/] [dim](syncing the store as it is; run the sync "
            "as the user the server runs as to carry them)[/]"
        )
        return 0
    counts = Compaction()
    try:
        compact_folder(spool, local, counts)
    except (OSError, GyreError) as exc:  # the store alone still syncs; the next pass retries
        console.print(
            f"[yellow]could not compact the spool {escape(str(spool))}: "
            f"{escape(str(exc))}[/] [dim](syncing the store as it is)[/]"
        )
    return int(counts.rows)


# what names a central store without doubt (besides an absolute path); "~" as the folder
# store expands it
_CENTRAL_PREFIXES = ("http://", "https://", "s3://", "file:", "~")


def check_central(value: str, option: str) -> None:
    """The central store of an edge sync, named without doubt: a URI (``http(s)://``,
    ``s3://``, ``file://``) or an absolute folder. ``gyre.internal`` or ``host:8080``
    would otherwise be a folder of that name here, and the sync would "succeed" into it."""
    if value.lower().startswith(_CENTRAL_PREFIXES) or os.path.isabs(value):
        return
    if "://" in value:  # an unknown scheme: the store's own check names the known ones
        return
    # a host name (with a dot) or host:port, perhaps with a path: a server meant
    server = re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?(/.*)?|[A-Za-z0-9.-]+:\d+(/.*)?",
                          value)  # fmt: skip
    raise InvalidArgument(
        f"{option} {value!r} names neither a server nor an absolute folder",
        hint=(f"did you mean 'http://{value}'? " if server else "")
        + "give a URL (https://gyre.internal, s3://bucket/prefix) or an absolute path",
    )


_STORE_PARTS = frozenset({"blobs", "manifests", "tmp"})  # what a folder store writes
_SEARCH_DEPTH = 3  # GYRE_HOME/predictions/store is 2 below GYRE_HOME
_SEARCH_FOLDERS = 2_000


def _check_source(store: ArtifactStore, option: str, *, missing_ok: bool = False) -> None:
    """For a folder store: NotFound if it does not exist, InvalidArgument if it holds no
    prediction log but a folder below it does (an edge server's ``--log-dir`` instead of its
    ``store``), or if it is neither an artifact store nor empty. A genuine store with nothing
    logged yet (an empty folder, or one holding ``blobs``/``manifests``) passes: syncing it
    copies 0 entries. Other stores (s3://, http(s)://) answer for themselves."""
    from gyre.artifacts._local import LocalArtifactStore

    if not isinstance(store, LocalArtifactStore):
        return
    root, value = store.root, f"{option} {store.uri!r}"
    if not root.exists() and missing_ok:
        return
    if not root.exists():
        near = _logs_under(root.parent) if root.parent.is_dir() else []
        raise NotFound(
            f"{value} does not exist" + (f"; did you mean {str(near[0])!r}?" if near else ""),
            hint=_source_hint(near),
        )
    if not root.is_dir():
        raise InvalidArgument(
            f"{value} is a file, not an artifact store folder", hint=_source_hint([])
        )
    if _holds_log(root):
        return
    below = _logs_under(root)
    if below:
        raise InvalidArgument(
            f"{value} holds no prediction log; did you mean {str(below[0])!r}?",
            hint=_source_hint(below),
        )
    try:
        entries = {p.name for p in root.iterdir()}
    except OSError as exc:
        raise InvalidArgument(f"cannot read {value}: {exc.strerror or exc}") from None
    if entries and not entries & _STORE_PARTS:
        hint = _source_hint([])
        if "spool" in entries:
            hint = (
                f"this looks like an edge server's --log-dir: its log goes to "
                f"{str(root / 'store')!r} once the first predictions are compacted"
            )
        raise InvalidArgument(
            f"{value} is not an artifact store and holds no prediction log", hint=hint
        )


def _source_hint(found: list[Path]) -> str:
    if len(found) > 1:
        return f"prediction logs found: {_listing([str(p) for p in found])}"
    if found:
        return "an edge server's log is in the store/ folder of its --log-dir; pass that as --from"
    return (
        "pass as --from the artifact store holding the prediction log: an edge server's "
        "<--log-dir>/store (default GYRE_HOME/predictions/store), or GYRE_ARTIFACT_URI"
    )


def _holds_log(folder: Path) -> bool:
    from gyre.artifacts._local import LocalArtifactStore
    from gyre.predictions._layout import KINDS, models_in

    store = LocalArtifactStore(str(folder))
    return any(models_in(store, kind) for kind in KINDS)


def _logs_under(folder: Path) -> list[Path]:
    """Folders up to ``_SEARCH_DEPTH`` below ``folder`` holding a prediction log, nearest
    first; hidden folders and the insides of artifact stores are not searched."""
    found: list[Path] = []
    level, visited = [folder], 0
    for _ in range(_SEARCH_DEPTH):
        below: list[Path] = []
        for parent in level:
            try:
                children = sorted(
                    e.path for e in os.scandir(parent) if e.is_dir() and not e.name.startswith(".")
                )
            except OSError:
                continue
            for child in map(Path, children):
                visited += 1
                if visited > _SEARCH_FOLDERS:
                    return found
                if child.name in _STORE_PARTS:
                    continue
                if _holds_log(child):
                    found.append(child)
                else:
                    below.append(child)
        level = below
    return found

"""``gyre models ...``: the registry from the command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gyre.cli._options import JsonFlag, TrackingUri
from gyre.cli._output import console, number, print_json, when
from gyre.errors import GateFailed, InvalidArgument
from gyre.registry import Registry, parse_version_ref

models_app = typer.Typer(
    help="Register model versions, move aliases, validate and promote, trace lineage.",
    no_args_is_help=True,
)

VersionRef = Annotated[
    str, typer.Argument(help="NAME/VERSION or NAME@ALIAS, e.g. churn/3 or churn@champion")
]


def _registry(uri: str | None) -> Registry:
    return Registry(uri)


def _version(reg: Registry, text: str) -> tuple[str, int]:
    name, version, alias = parse_version_ref(text)
    if version is None:
        assert alias is not None
        version = reg.store.get_model_version_by_alias(name, alias).version
    return name, version


@models_app.command("list")
def models_list(tracking_uri: TrackingUri = None, json: JsonFlag = False) -> None:
    """List registered models with their newest version and aliases."""
    models = _registry(tracking_uri).list_models()
    if json:
        print_json([m.to_dict() for m in models])
        return
    table = Table("name", "versions", "aliases", "updated", title="registered models")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in m.aliases.items()) or "-"
        table.add_row(m.name, str(m.latest_version), aliases, when(m.last_updated_time))
    console.print(table)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Registered model name, or NAME/VERSION.")],
    tracking_uri: TrackingUri = None,
    json: JsonFlag = False,
) -> None:
    """Show a model's versions (or one version) with aliases and gate verdicts."""
    reg = _registry(tracking_uri)
    if "/" in name or "@" in name:
        model_name, version = _version(reg, name)
        mv = reg.store.get_model_version(model_name, version)
        if json:
            print_json(mv.to_dict())
            return
        versions = [mv]
    else:
        model = reg.get_model(name)
        versions = reg.versions(name)
        if json:
            print_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
            return
    table = Table("version", "aliases", "gate", "run", "created", "source", title=name)
    for v in versions:
        gate = {"blessed": "[green]blessed[/]", "rejected": "[red]rejected[/]"}.get(
            v.gate_verdict or "", "[dim]not validated[/]"
        )
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            gate,
            (v.run_id or "-")[:8],
            when(v.creation_time),
            v.source,
        )
    console.print(table)


@models_app.command("register")
def models_register(
    uri: Annotated[str, typer.Argument(help="runs:/RUN_ID/PATH of a logged model.")],
    name: Annotated[str, typer.Argument(help="Registered model name (created if new).")],
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    tracking_uri: TrackingUri = None,
    json: JsonFlag = False,
) -> None:
    """Register a logged model as the next version of NAME."""
    mv = _registry(tracking_uri).register_model(uri, name, description=description)
    if json:
        print_json(mv.to_dict())
    else:
        console.print(f"registered [bold]{mv.name}/{mv.version}[/] from {mv.source}")


@models_app.command("alias")
def models_alias(
    ref: VersionRef,
    alias: Annotated[str, typer.Argument(help="Alias to point at the version, e.g. champion.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
    tracking_uri: TrackingUri = None,
    json: JsonFlag = False,
) -> None:
    """Point ALIAS at a version (atomic, audited), or --delete it.

    Example: gyre models alias churn/3 challenger --reason "retrained on May data"
    """
    reg = _registry(tracking_uri)
    if delete:
        name = ref.split("@", 1)[0].split("/", 1)[0]
        entry = reg.store.delete_alias(name, alias, reason=reason)
    else:
        name, version = _version(reg, ref)
        entry = reg.set_alias(name, alias, version, reason=reason)
    if json:
        print_json(entry.to_dict())
    else:
        moved = f"{entry.from_version or '-'} → {entry.to_version or '-'}"
        console.print(f"{entry.model}@{alias}: {moved}")


@models_app.command("delete")
def models_delete(
    ref: Annotated[str, typer.Argument(help="NAME/VERSION, e.g. churn/3")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    tracking_uri: TrackingUri = None,
) -> None:
    """Delete a version no alias points to."""
    name, version, _alias = parse_version_ref(ref)
    if version is None:
        raise InvalidArgument(f"{ref!r}: delete takes <name>/<version>, not an alias")
    _registry(tracking_uri).delete_version(name, version, reason=reason)
    console.print(f"deleted {name}/{version}")


@models_app.command("lineage")
def models_lineage(
    ref: VersionRef, tracking_uri: TrackingUri = None, json: JsonFlag = False
) -> None:
    """Print what a version came from: run, params, metrics, datasets, code, gate."""
    reg = _registry(tracking_uri)
    name, version = _version(reg, ref)
    info = reg.lineage(name, version)
    if json:
        print_json(info)
        return
    aliases = f" [cyan]@{', @'.join(info['aliases'])}[/]" if info["aliases"] else ""
    tree = Tree(f"[bold]{name}/{version}[/]{aliases}")
    run = info["run"]
    if run and not run.get("missing"):
        node = tree.add(f"run [bold]{run['name']}[/] {run['run_id']} ({run['status']})")
        if run["params"]:
            params = node.add("params")
            for k, v in sorted(run["params"].items()):
                params.add(f"{k} = {v}")
        if run["metrics"]:
            metrics = node.add("metrics")
            for k, v in sorted(run["metrics"].items()):
                metrics.add(f"{k} = {number(v)}")
    elif run:
        tree.add(f"[red]run {run['run_id']} is gone[/]")
    code = info["code"]
    dirty = " (uncommitted changes)" if code.get("dirty") == "true" else ""
    tree.add(f"code commit {code.get('commit') or 'unknown'}{dirty}")
    datasets = tree.add("datasets")
    for d in info["datasets"]:
        datasets.add(
            f"{escape(d['name'])} \\[{escape(d['context'])}] sha256:{d['digest'][:12]} "
            f"{d['rows'] if d['rows'] is not None else '?'} rows"
        )
    gate = info["gate"]
    verdict = gate["verdict"] or "not validated"
    summary = (gate["report"] or {}).get("summary", "")
    tree.add(f"gate {verdict}{': ' + summary if summary else ''}")
    tree.add("deployments: none recorded")
    console.print(tree)


@models_app.command("validate")
def models_validate(
    ref: VersionRef,
    data: Annotated[str, typer.Option("--data", help="Holdout data (.parquet, .csv, .jsonl).")],
    target: Annotated[str, typer.Option("--target", help="Name of the label column.")],
    against: Annotated[str, typer.Option(help="Alias to compare with; '' for none.")] = "champion",
    policy: Annotated[str | None, typer.Option(help="Gate policy YAML (see below).")] = None,
    tracking_uri: TrackingUri = None,
    json: JsonFlag = False,
) -> None:
    """Validate a version on holdout data; exit 0 when blessed, 2 when rejected.

    Computes task metrics (overall and per slice), single-row and batch latency, and the
    signature against the champion, then applies the policy and records the verdict on the
    version. Policy YAML keys: thresholds {metric: {min, max}}, against_champion {metric:
    {max_regression, min_improvement}}, latency {single_p99_ms, batch_p99_ms, ...},
    slices {columns, thresholds}, require_signature_match.
    """
    from gyre.registry._gate import validate

    reg = _registry(tracking_uri)
    name, version = _version(reg, ref)
    report = validate(reg, name, version, data, target, against=against or None, policy=policy)
    if json:
        print_json(report)
    else:
        _print_report(report)
    if report["verdict"] != "blessed":
        raise GateFailed(f"{name}/{version} rejected: {report['summary']}")


def _print_report(report: dict[str, Any]) -> None:
    table = Table(
        "check",
        "value",
        "threshold",
        "",
        title=(f"{report['model']}/{report['version']} on {report['rows']} rows"),
    )
    for c in report["checks"]:
        value = c.get("value")
        shown = number(value) if isinstance(value, float) else str(c.get("detail", value))
        table.add_row(
            c["check"],
            shown,
            c.get("threshold", ""),
            "[green]pass[/]" if c["ok"] else "[red]FAIL[/]",
        )
    console.print(table)
    m = report["metrics"]
    keys = [
        k
        for k in (
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "log_loss",
            "mae",
            "rmse",
            "r2",
        )
        if k in m
    ]
    console.print("metrics: " + "  ".join(f"{k} {number(m[k])}" for k in keys))
    lat = report["latency"]
    console.print(
        f"latency: single p50 {lat['single_p50_ms']:.2f} ms · p99 "
        f"{lat['single_p99_ms']:.2f} ms · batch of {int(lat['batch_rows'])} p50 "
        f"{lat['batch_p50_ms']:.2f} ms"
    )
    style = "green" if report["verdict"] == "blessed" else "red"
    console.print(f"verdict: [bold {style}]{report['verdict']}[/] ({report['summary']})")


@models_app.command("promote")
def models_promote(
    ref: Annotated[str, typer.Argument(help="NAME/VERSION, e.g. churn/3")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if not blessed (audited as forced).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    tracking_uri: TrackingUri = None,
) -> None:
    """Move an alias (default: champion) to a version the gate blessed."""
    reg = _registry(tracking_uri)
    name, version = _version(reg, ref)
    entry = reg.promote(name, version, alias, force=force, reason=reason)
    console.print(
        f"{name}@{alias}: {entry.from_version or '-'} → {entry.to_version} [dim]({entry.reason})[/]"
    )


@models_app.command("audit")
def models_audit(
    name: Annotated[str | None, typer.Argument(help="Model name (default: all).")] = None,
    limit: Annotated[int, typer.Option(help="Entries to show.")] = 50,
    tracking_uri: TrackingUri = None,
    json: JsonFlag = False,
) -> None:
    """The audit log: who moved which alias when, and why."""
    entries = _registry(tracking_uri).audit_log(name, limit)
    if json:
        print_json([e.to_dict() for e in entries])
        return
    table = Table("when", "who", "action", "model", "alias", "from", "to", "why", title="audit")
    for e in entries:
        table.add_row(
            when(e.time),
            e.actor,
            e.action,
            e.model,
            e.alias or "",
            str(e.from_version or ""),
            str(e.to_version or ""),
            e.reason,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    from gyre.cli import _build_cmd

    _build_cmd.register(models_app)
    app.add_typer(models_app, name="models")

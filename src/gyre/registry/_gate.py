"""The validation gate: one command decides whether a model version may ship.

It computes task metrics on holdout data (overall and per slice), measures single-row and
batch latency on this machine, checks the signature against the champion's, evaluates a
policy, and records the verdict with every number on the version. A policy (YAML)::

    thresholds:            # absolute: always checked
      f1: {min: 0.80}
      log_loss: {max: 0.45}
    against_champion:      # relative: checked when the model has a champion
      f1: {max_regression: 0.01}      # may be at most 0.01 worse
      roc_auc: {min_improvement: 0.0} # must be at least as good
    latency:
      single_p99_ms: 50
      batch_p99_ms: 500
    slices:
      columns: [region]
      thresholds: {accuracy: {min: 0.7}}
    require_signature_match: true

With no policy: the primary metric (f1 for classifiers, rmse for regressors) may not be
worse than the champion's, and the signature must match.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gyre._metrics import LOWER_IS_BETTER, classification_metrics, regression_metrics
from gyre.entities import ModelVersion
from gyre.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from gyre.models import Model
    from gyre.registry._registry import Registry

__all__ = ["GatePolicy", "load_policy", "validate"]


class Bound(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None


class Relative(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_regression: float | None = Field(default=None, ge=0)
    min_improvement: float | None = None


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    single_p50_ms: float | None = None
    single_p99_ms: float | None = None
    batch_p50_ms: float | None = None
    batch_p99_ms: float | None = None


class Slices(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(default_factory=list)
    thresholds: dict[str, Bound] = Field(default_factory=dict)


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    against_champion: dict[str, Relative] | None = None
    latency: Latency = Field(default_factory=Latency)
    slices: Slices = Field(default_factory=Slices)
    require_signature_match: bool = True
    batch_size: int = Field(default=256, ge=1)


def load_policy(source: str | Path | dict[str, Any] | None) -> GatePolicy:
    """A policy from a YAML file, a dict, or the default (None)."""
    if source is None:
        return GatePolicy()
    if isinstance(source, dict):
        data: Any = source
        where = "policy"
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise NotFound(f"policy file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"policy file {str(path)!r} is not valid YAML: {exc}") from None
        where = str(path)
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidArgument(
            f"{where}: {loc or 'policy'}: {first['msg']} (got {first.get('input')!r})",
            hint="see the policy format in `gyre models validate --help`",
        ) from None


def _read_data(data: Any) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    path = Path(data)
    if not path.is_file():
        raise NotFound(f"holdout data {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    raise InvalidArgument(
        f"holdout data {str(path)!r}: unknown format {suffix!r}",
        hint="use .parquet, .csv or .jsonl",
    )


def _evaluate(model: Model, x: Any, y: Any) -> dict[str, Any]:
    if _is_classifier(model):
        pred = model.predict(x)
        proba = model.predict_proba(x) if model.task.has_predict_proba else None
        return classification_metrics(y, pred, proba, classes=model.task.classes)
    return regression_metrics(y, model.predict(x))


def _is_classifier(model: Model) -> bool:
    return model.task.kind == "classifier"


def _latency(model: Model, x: Any, batch_size: int) -> dict[str, float]:
    import numpy as np

    n = len(x)
    single = []
    for i in range(min(200, max(n, 1) * 4)):
        row = x.iloc[[i % n]]
        t0 = time.perf_counter()
        model.predict(row)
        single.append((time.perf_counter() - t0) * 1000)
    batch = []
    rows = x.iloc[: min(batch_size, n)]
    for _ in range(20):
        t0 = time.perf_counter()
        model.predict(rows)
        batch.append((time.perf_counter() - t0) * 1000)
    return {
        "single_p50_ms": float(np.percentile(single, 50)),
        "single_p99_ms": float(np.percentile(single, 99)),
        "batch_p50_ms": float(np.percentile(batch, 50)),
        "batch_p99_ms": float(np.percentile(batch, 99)),
        "batch_rows": float(len(rows)),
    }


def _columns(model: Model) -> dict[str, Any]:
    sig = model.signature
    if sig is None:
        return {}
    inputs: Any = sig.inputs
    specs: Any = getattr(inputs, "columns", None) or getattr(inputs, "tensors", None) or ()
    return {spec.name: spec for spec in specs}


def _signature_diff(candidate: Model, champion: Model) -> list[str]:
    """What traffic valid for the champion would break on the candidate."""
    ours, theirs = _columns(candidate), _columns(champion)
    problems = []
    for name, col in ours.items():
        if getattr(col, "optional", False):
            continue
        if name not in theirs:
            problems.append(f"candidate needs column {name!r}, which the champion does not take")
        elif str(theirs[name].dtype) != str(col.dtype):
            problems.append(
                f"column {name!r}: candidate expects {col.dtype}, champion {theirs[name].dtype}"
            )
        elif getattr(col, "shape", None) != getattr(theirs[name], "shape", None):
            problems.append(
                f"input {name!r}: candidate expects shape {col.shape}, champion "
                f"{theirs[name].shape}"
            )
    return problems


def _bound_checks(prefix: str, metrics: dict[str, Any], bounds: dict[str, Bound]) -> list[dict]:  # type: ignore[type-arg]
    checks = []
    for metric, bound in bounds.items():
        value = metrics.get(metric)
        if value is None:
            checks.append(
                {
                    "check": f"{prefix}{metric}",
                    "ok": False,
                    "value": None,
                    "detail": f"metric {metric!r} is not computed for this task",
                }
            )
            continue
        ok = not (isinstance(value, float) and math.isnan(value))
        parts = []
        if bound.min is not None:
            ok = ok and value >= bound.min
            parts.append(f">= {bound.min}")
        if bound.max is not None:
            ok = ok and value <= bound.max
            parts.append(f"<= {bound.max}")
        checks.append(
            {
                "check": f"{prefix}{metric}",
                "ok": ok,
                "value": value,
                "threshold": " and ".join(parts),
            }
        )
    return checks


def validate(
    registry: Registry,
    name: str,
    version: int,
    data: Any,
    target: str,
    *,
    against: str | None = "champion",
    policy: str | Path | dict[str, Any] | GatePolicy | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Validate ``name/version`` on holdout ``data``; returns (and records) the report.

    The report's ``verdict`` is ``blessed`` or ``rejected``; ``checks`` lists every check
    with its value and threshold."""
    pol = policy if isinstance(policy, GatePolicy) else load_policy(policy)
    frame = _read_data(data)
    if target not in frame.columns:
        raise InvalidArgument(
            f"target column {target!r} is not in the holdout data",
            hint=f"columns: {', '.join(map(str, frame.columns))}",
        )
    if len(frame) == 0:
        raise InvalidArgument("holdout data has no rows")
    x, y = frame.drop(columns=[target]), frame[target].to_numpy()
    candidate_version = registry.store.get_model_version(name, version)
    candidate = registry.load_model(candidate_version.source)
    metrics = _evaluate(candidate, x, y)
    checks = _bound_checks("", metrics, pol.thresholds)

    champion_version: ModelVersion | None = None
    champion_metrics: dict[str, Any] | None = None
    if against:
        try:
            champion_version = registry.store.get_model_version_by_alias(name, against)
        except NotFound:
            champion_version = None
    if champion_version is not None and champion_version.version == version:
        champion_version = None  # validating the champion against itself proves nothing
    if champion_version is not None:
        champion = registry.load_model(champion_version.source)
        champion_metrics = _evaluate(champion, x, y)
        relative = pol.against_champion
        if relative is None:
            primary = "f1" if _is_classifier(candidate) else "rmse"
            relative = {primary: Relative(max_regression=0.0)}
        for metric, rule in relative.items():
            ours, theirs = metrics.get(metric), champion_metrics.get(metric)
            if ours is None or theirs is None:
                checks.append(
                    {
                        "check": f"vs {against}: {metric}",
                        "ok": False,
                        "value": ours,
                        "detail": f"metric {metric!r} is not computed for this task",
                    }
                )
                continue
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            gain = sign * (ours - theirs)  # > 0: the candidate is better
            if rule.min_improvement is not None:
                checks.append(
                    {
                        "check": f"vs {against}: {metric} improvement",
                        "ok": gain >= rule.min_improvement,
                        "value": ours,
                        "champion": theirs,
                        "threshold": f"gain >= {rule.min_improvement}",
                        "gain": gain,
                    }
                )
            if rule.max_regression is not None:
                checks.append(
                    {
                        "check": f"vs {against}: {metric} regression",
                        "ok": gain >= -rule.max_regression,
                        "value": ours,
                        "champion": theirs,
                        "threshold": f"loss <= {rule.max_regression}",
                        "gain": gain,
                    }
                )
        if pol.require_signature_match:
            problems = _signature_diff(candidate, champion)
            checks.append(
                {
                    "check": f"signature vs {against}",
                    "ok": not problems,
                    "detail": "; ".join(problems) or "compatible",
                }
            )

    slices: dict[str, dict[str, Any]] = {}
    for column in pol.slices.columns:
        if column not in x.columns:
            raise InvalidArgument(f"slice column {column!r} is not in the holdout data")
        for value, index in x.groupby(column, observed=True).groups.items():
            key = f"{column}={value}"
            part = x.loc[index]
            slices[key] = _evaluate(candidate, part, frame.loc[index, target].to_numpy())
            slices[key]["rows"] = len(part)
            checks += _bound_checks(f"slice {key}: ", slices[key], pol.slices.thresholds)

    latency = _latency(candidate, x, pol.batch_size)
    for field, budget in pol.latency.model_dump().items():
        if budget is not None:
            checks.append(
                {
                    "check": f"latency {field}",
                    "ok": latency[field] <= budget,
                    "value": latency[field],
                    "threshold": f"<= {budget} ms",
                }
            )

    failed = [c for c in checks if not c["ok"]]
    verdict = "rejected" if failed else "blessed"
    summary = f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (
        f"; failed: {', '.join(c['check'] for c in failed)}" if failed else ""
    )
    report: dict[str, Any] = {
        "verdict": verdict,
        "summary": summary,
        "model": name,
        "version": version,
        "rows": len(frame),
        "target": target,
        "metrics": metrics,
        "champion": (
            {"alias": against, "version": champion_version.version, "metrics": champion_metrics}
            if champion_version is not None
            else None
        ),
        "slices": slices,
        "latency": latency,
        "checks": checks,
        "policy": pol.model_dump(),
    }
    if record:
        from gyre.registry._registry import current_actor

        registry.store.record_gate(name, version, verdict, report, actor=current_actor())
    return report

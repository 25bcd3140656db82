"""``gyre demo``: the loop end to end on the embedded default, on data scikit-learn ships.

It trains a gradient-boosting classifier on scikit-learn's breast-cancer data under two
learning rates, tracks both runs (params, per-stage validation loss, final metrics, the
train/test datasets, an artifact and the model package), compares them, registers the
better model, validates it on a holdout set with a gate policy, makes it ``champion``, and
says where everything is stored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from gyre import config
from gyre.cli._app import compare_table
from gyre.cli._output import console
from gyre.errors import InvalidArgument
from gyre.tracking import _fluent as fluent

SETTINGS = [
    {"learning_rate": 0.3, "n_estimators": 60, "max_depth": 3},
    {"learning_rate": 0.05, "n_estimators": 60, "max_depth": 2},
]


MODEL_NAME = "demo-classifier"
POLICY = {
    "thresholds": {"roc_auc": {"min": 0.95}, "f1": {"min": 0.9}},
    "against_champion": {"roc_auc": {"max_regression": 0.01}},
    "latency": {"single_p99_ms": 500},
}


def _register_validate_promote(run_id: str, holdout: Any, uri: str) -> int:
    """Register the run's model, gate it on the holdout set, and promote it when blessed."""
    from gyre.registry import Registry
    from gyre.registry._gate import validate

    registry = Registry(uri)
    try:
        mv = registry.register_model(
            f"runs:/{run_id}/model", MODEL_NAME, description="gyre demo: the better learning rate"
        )
        console.print(f"registered [bold]{MODEL_NAME}/{mv.version}[/]")
        with console.status("validating on the holdout set (metrics, slices, latency)"):
            report = validate(registry, MODEL_NAME, mv.version, holdout, "target", policy=POLICY)
        m = report["metrics"]
        style = "green" if report["verdict"] == "blessed" else "red"
        console.print(
            f"gate [bold {style}]{report['verdict']}[/]: {report['summary']} · accuracy "
            f"{m['accuracy']:.4f} · f1 {m['f1']:.4f} · roc_auc {m['roc_auc']:.4f} · "
            f"p99 single-row {report['latency']['single_p99_ms']:.2f} ms"
        )
        if report["verdict"] == "blessed":
            entry = registry.promote(
                MODEL_NAME, mv.version, "champion", reason="gyre demo: blessed on the holdout set"
            )
            console.print(
                f"{MODEL_NAME}@champion: {entry.from_version or '-'} → {entry.to_version}"
            )
        return mv.version
    finally:
        registry.close()


def _require_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InvalidArgument(
            "gyre demo needs scikit-learn, which is not installed",
            hint="pip install 'gyreml[sklearn]'",
        ) from None


def run_demo(seed: int, tracking_uri: str | None) -> None:
    _require_sklearn()
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    uri = config.get("GYRE_TRACKING_URI", tracking_uri)
    fluent.set_tracking_uri(uri)
    client = fluent.get_client()
    console.print(
        Panel.fit(
            "[bold]gyre demo[/] — track two models, compare them, see where it all lives",
            border_style="cyan",
        )
    )

    frame = load_breast_cancer(as_frame=True).frame
    train, rest = train_test_split(
        frame, test_size=0.4, random_state=seed, stratify=frame["target"]
    )
    test, holdout = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=rest["target"]
    )
    x_train, y_train = train.drop(columns="target"), train["target"]
    x_test, y_test = test.drop(columns="target"), test["target"]

    run_ids: list[str] = []
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        for params in SETTINGS:
            name = f"gbm-lr{params['learning_rate']}"
            task = progress.add_task(f"training {name}", total=params["n_estimators"])
            with fluent.start_run(
                experiment="demo", name=name, tags={"demo": "tracking", "seed": seed}
            ) as run:
                fluent.log_params({**params, "model": "GradientBoostingClassifier"})
                fluent.log_dataset(train, "breast-cancer", context="train")
                fluent.log_dataset(test, "breast-cancer", context="test")
                model = GradientBoostingClassifier(random_state=seed, **params)
                model.fit(x_train, y_train)
                for step, proba in enumerate(model.staged_predict_proba(x_test), start=1):
                    fluent.log_metric("val_log_loss", float(log_loss(y_test, proba)), step=step)
                    progress.advance(task)
                proba = model.predict_proba(x_test)[:, 1]
                pred = (proba >= 0.5).astype(int)
                fluent.log_metrics(
                    {
                        "accuracy": float(accuracy_score(y_test, pred)),
                        "f1": float(f1_score(y_test, pred)),
                        "roc_auc": float(roc_auc_score(y_test, proba)),
                        "log_loss": float(log_loss(y_test, proba)),
                    }
                )
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "feature_importance.csv"
                    path.write_text(
                        "feature,importance\n"
                        + "".join(
                            f"{f},{v:.6f}\n"
                            for f, v in sorted(
                                zip(x_train.columns, model.feature_importances_, strict=True),
                                key=lambda fv: -fv[1],
                            )
                        )
                    )
                    fluent.log_artifact(path)
                fluent.log_model(model, input_example=x_train[:5], reference_data=x_train)
                run_ids.append(run.run_id)

    runs = [client.get_run(r) for r in run_ids]
    compare_table(runs, title="two learning rates, compared")
    best = max(runs, key=lambda r: r.metrics["roc_auc"])
    console.print(f"best by ROC AUC: [bold green]{best.name}[/] ({best.metrics['roc_auc']:.4f})")
    version = _register_validate_promote(best.run_id, holdout, uri)
    console.rule("where it lives")
    digest = runs[0].inputs[0].dataset.digest[:12]
    for label, value in (
        ("metadata", uri),
        ("artifacts", client.artifact_uri),
        (
            "dataset",
            f"breast-cancer · train {len(train)} rows · test {len(test)} rows · sha256 {digest}",
        ),
    ):
        console.print(f"[bold]{label:<10}[/]{value}", soft_wrap=True)
    console.rule("next")
    for line in (
        "gyre runs list -e demo -o 'metrics.roc_auc DESC'",
        f"gyre runs compare {run_ids[0][:8]} {run_ids[1][:8]}",
        f"gyre runs show {best.run_id[:8]}",
        f"gyre models lineage {MODEL_NAME}/{version}",
        f"gyre models audit {MODEL_NAME}",
        "gyre server        # REST API and docs at http://127.0.0.1:5050/docs",
    ):
        console.print(f"  {line}", soft_wrap=True, markup=False)
    fluent.set_tracking_uri(None)

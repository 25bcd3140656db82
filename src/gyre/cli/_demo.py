"""``gyre demo``: the whole loop end to end, on the embedded default, in about two minutes.

A churn model for a made-up telecom, on data generated here (seeded, so ``--seed`` repeats
a demo exactly):

1. **track** two gradient-boosting settings (params, per-stage validation loss, metrics,
   datasets, the model package) and compare them;
2. **register** the better one, **gate** it on a holdout set, make it ``champion``;
3. **serve** it (Open Inference Protocol server in this process, prediction log on, a canary
   slot for the ``challenger`` alias) and **monitor** it (data drift, accuracy, error drift);
4. send traffic with labels; then **the world changes** part-way (prices rise, and support
   calls stop predicting churn the way they did);
5. the monitor **detects** it: alerts, an incident;
6. the ready-made pipeline **retrains** on the fresh labelled traffic, the gate blesses the
   new version against the champion, it becomes ``challenger``;
7. the server picks it up and sends it a **canary** share of the traffic; on live labelled
   traffic it beats the champion and is **promoted**;
8. a **summary**: detection delay, accuracy before / during / after, versions and what moved
   them, where to look next. ``--serve-ui`` leaves ``gyre server`` (API and dashboard)
   running on the demo's data.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gyre import config
from gyre.cli._app import compare_table
from gyre.cli._output import console
from gyre.errors import InvalidArgument
from gyre.tracking import _fluent as fluent

if TYPE_CHECKING:
    from gyre.store import MonitoringStore

MODEL_NAME = "churn"
FEATURES = [
    "tenure_years",
    "monthly_charges",
    "support_calls",
    "data_usage_gb",
    "contract_months",
    "age",
    "late_payments",
    "discount",
]
# The weights of the world before and after it changes: charges rise (covariate drift),
# and support calls now mean a customer is being looked after (concept drift).
BEFORE = [-1.2, 0.9, 1.3, -0.4, -0.8, 0.0, 0.7, -0.5]
AFTER = [-1.2, 0.9, -1.3, -0.4, -0.8, 0.0, 0.7, -0.5]
SHIFT = {"monthly_charges": 1.0, "support_calls": 0.6}
SETTINGS = [
    {"learning_rate": 0.3, "n_estimators": 60, "max_depth": 3},
    {"learning_rate": 0.05, "n_estimators": 60, "max_depth": 2},
]
POLICY = {
    "thresholds": {"roc_auc": {"min": 0.85}, "accuracy": {"min": 0.75}},
    "latency": {"single_p99_ms": 500},
}
CANARY_PERCENT = 30
DRIFT_SHARE = 0.25  # the monitor's data drift check, and the drift report: a quarter of the columns


@dataclass
class Sizes:
    train: int = 4000
    calm: int = 1500
    drifted: int = 1500
    canary: int = 2400
    after: int = 1000
    rows_per_request: int = 8

    @classmethod
    def fast(cls) -> Sizes:
        return cls(train=2500, calm=800, drifted=1000, canary=1600, after=500)


@dataclass
class Phase:
    name: str
    rows: int = 0
    correct: int = 0
    versions: dict[int, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.rows if self.rows else None


def _require_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InvalidArgument(
            "gyre demo needs scikit-learn, which is not installed",
            hint="pip install 'gyreml[sklearn]'",
        ) from None


class World:
    """Customers, before and after the change; the label is whether they churn."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)

    def sample(self, n: int, *, changed: bool) -> tuple[Any, Any]:
        import numpy as np
        import pandas as pd

        x = self.rng.normal(size=(n, len(FEATURES)))
        if changed:
            for name, delta in SHIFT.items():
                x[:, FEATURES.index(name)] += delta
        weights = np.array(AFTER if changed else BEFORE)
        logit = x @ weights - (0.9 if changed else 0.0) + self.rng.logistic(scale=0.35, size=n)
        frame = pd.DataFrame(x, columns=FEATURES).round(4)
        return frame, (logit > 0).astype(int)


class Demo:
    def __init__(self, seed: int, tracking_uri: str | None, fast: bool) -> None:
        self.seed = seed
        self.sizes = Sizes.fast() if fast else Sizes()
        self.uri = config.get("GYRE_TRACKING_URI", tracking_uri)
        self.artifact_uri = config.artifact_uri_for(self.uri, None)
        self.world = World(seed)
        import random

        self._ids = random.Random(seed)  # request ids: the canary split repeats with the seed
        from gyre.registry import Registry

        self.registry = Registry(self.uri, self.artifact_uri)
        # Every gyre store keeps monitors and incidents too.
        self.monitoring = cast("MonitoringStore", self.registry.store)
        self.phases: list[Phase] = []
        self.started = time.perf_counter()
        self.detection: dict[str, Any] = {}
        self.served_since = datetime.now(UTC)

    # -- 1. track -------------------------------------------------------------------------

    def track(self) -> Any:
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

        x, y = self.world.sample(self.sizes.train, changed=False)
        n_test = len(x) // 5
        x_train, y_train = x[: -2 * n_test], y[: -2 * n_test]
        x_test, y_test = x[-2 * n_test : -n_test], y[-2 * n_test : -n_test]
        holdout = x[-n_test:].assign(target=y[-n_test:])
        self.x_train = x_train
        fluent.set_tracking_uri(self.uri)
        client = fluent.get_client()
        train_frame = x_train.assign(target=y_train)
        test_frame = x_test.assign(target=y_test)
        run_ids: list[str] = []
        with self._progress() as progress:
            for params in SETTINGS:
                name = f"gbm-lr{params['learning_rate']}"
                task = progress.add_task(f"training {name}", total=params["n_estimators"])
                with fluent.start_run(
                    experiment="demo", name=name, tags={"demo": "loop", "seed": self.seed}
                ) as run:
                    fluent.log_params({**params, "model": "GradientBoostingClassifier"})
                    fluent.log_dataset(train_frame, "churn-customers", context="train")
                    fluent.log_dataset(test_frame, "churn-customers", context="test")
                    model = GradientBoostingClassifier(random_state=self.seed, **params)
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
                                    zip(FEATURES, model.feature_importances_, strict=True),
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
        console.print(
            f"best by ROC AUC: [bold green]{best.name}[/] ({best.metrics['roc_auc']:.4f})"
        )
        self.run_ids = run_ids
        return best, holdout

    # -- 2. register, gate, champion --------------------------------------------------------

    def register(self, best: Any, holdout: Any) -> int:
        from gyre.registry._gate import validate

        mv = self.registry.register_model(
            f"runs:/{best.run_id}/model", MODEL_NAME, description="gyre demo: the better setting"
        )
        with console.status("validating on the holdout set (metrics, latency)"):
            report = validate(
                self.registry, MODEL_NAME, mv.version, holdout, "target", policy=POLICY
            )
        m = report["metrics"]
        style = "green" if report["verdict"] == "blessed" else "red"
        console.print(
            f"registered [bold]{MODEL_NAME}/{mv.version}[/] · gate [bold {style}]"
            f"{report['verdict']}[/]: {report['summary']} · accuracy {m['accuracy']:.3f} · "
            f"roc_auc {m['roc_auc']:.3f}"
        )
        if report["verdict"] != "blessed":
            raise InvalidArgument(f"the demo model was rejected by its gate: {report['summary']}")
        self.registry.promote(MODEL_NAME, mv.version, "champion", reason="gyre demo: first release")
        # The canary slot starts on the champion itself: no canary until a challenger exists.
        self.registry.set_alias(MODEL_NAME, "challenger", mv.version, reason="no challenger yet")
        console.print(f"{MODEL_NAME}@champion → v{mv.version}")
        return mv.version

    # -- 3. serve and monitor ---------------------------------------------------------------

    def serve(self) -> None:
        import httpx

        from gyre.predictions import PredictionLog
        from gyre.serving import create_app, resolve_model
        from gyre.serving._slots import Challenger

        spool = Path(config.get("GYRE_SPOOL_DIR")) / f"demo-{uuid.uuid4().hex[:8]}"
        self.log = PredictionLog(spool, self.registry.artifact_store, compact_interval_s=3600)
        primary = resolve_model(f"models:/{MODEL_NAME}@champion", registry=self.registry)
        challenger = resolve_model(f"models:/{MODEL_NAME}@challenger", registry=self.registry)
        app = create_app(
            [primary],
            prediction_log=self.log,
            challengers=[Challenger(challenger, "canary", CANARY_PERCENT)],
            registry=self.registry,
            reload_interval=0,  # the demo asks for a reload when an alias moved
            access_log=False,
        )
        self.server = _ServerThread(app)
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, timeout=30)
        console.print(
            f"serving {MODEL_NAME}@champion at [bold]{self.server.url}[/] "
            f"(OIP v2, /predict; canary slot: {CANARY_PERCENT}% to @challenger)"
        )

    def monitor(self) -> None:
        from gyre.monitoring import MonitorSpec, apply_monitor

        spec = MonitorSpec.from_dict(
            {
                "name": f"{MODEL_NAME}-health",
                "model": MODEL_NAME,
                "window": "1h",
                "cooldown": "1h",
                "min_rows": 100,
                "checks": [
                    {"kind": "data_drift", "drift_share": DRIFT_SHARE},
                    {"kind": "performance", "metric": "accuracy", "threshold": {"lower": 0.75}},
                    {"kind": "error_drift", "detector": "adwin"},
                ],
                "sinks": ["log"],
            }
        )
        apply_monitor(self.monitoring, spec)
        console.print(
            "monitor [bold]churn-health[/]: data drift (a quarter of the columns), "
            "accuracy ≥ 0.75, ADWIN on the error stream"
        )

    def run_monitor(self) -> Any:
        from gyre.monitoring import AlertDispatcher, run_monitor

        self.log.flush()
        self.log.compact()
        dispatcher = AlertDispatcher(self.monitoring)
        try:
            return run_monitor(
                f"{MODEL_NAME}-health",
                store=self.registry.store,
                artifacts=self.registry.artifact_store,
                dispatcher=dispatcher,
            )
        finally:
            dispatcher.drain(timeout=5)
            dispatcher.close()

    # -- traffic ------------------------------------------------------------------------------

    def traffic(self, name: str, rows: int, *, changed: bool) -> Phase:
        phase = Phase(name)
        x, y = self.world.sample(rows, changed=changed)
        step = self.sizes.rows_per_request
        with self._progress() as progress:
            task = progress.add_task(f"traffic: {name}", total=rows)
            labels: list[tuple[str, int]] = []
            for start in range(0, rows, step):
                chunk = x.iloc[start : start + step]
                rid = f"{self._ids.getrandbits(64):016x}"
                answer = self.http.post(
                    f"/predict/{MODEL_NAME}",
                    json={"records": chunk.to_dict(orient="records")},
                    headers={"X-Request-ID": rid},
                )
                answer.raise_for_status()
                version = int(answer.headers["X-Gyre-Model-Version"])
                predictions = answer.json()["predictions"]
                truth = y[start : start + step]
                for i, (p, t) in enumerate(zip(predictions, truth, strict=True)):
                    phase.rows += 1
                    phase.correct += int(p == int(t))
                    phase.versions[version] = phase.versions.get(version, 0) + 1
                    labels.append((f"{rid}:{i}", int(t)))
                progress.advance(task, len(chunk))
            # The labels come back later (here: at once), through the feedback endpoint.
            for start in range(0, len(labels), 500):
                self.http.post(
                    f"/feedback/{MODEL_NAME}", json={"labels": labels[start : start + 500]}
                ).raise_for_status()
        self.phases.append(phase)
        split = ", ".join(f"v{v}: {n}" for v, n in sorted(phase.versions.items()))
        console.print(
            f"  {phase.rows} predictions ({split}), accuracy on their labels "
            f"[bold]{phase.accuracy:.3f}[/]"
        )
        return phase

    # -- the loop ---------------------------------------------------------------------------

    def detect(self, calm_rows: int) -> Any:
        run = self.run_monitor()
        table = Table("check", "status", "finding", title="monitor churn-health")
        colour = {"ok": "green", "alert": "red", "not enough data": "yellow", "error": "magenta"}
        for f in run.findings:
            table.add_row(f.check, f"[{colour.get(f.status, '')}]{f.status}[/]", f.message)
        console.print(table)
        for f in run.findings:
            if f.check == "error_drift" and f.details.get("detections"):
                # This run's labels are exactly those after the change.
                first = int(f.details["detections"][0]) - int(f.details["before"]) + 1
                self.detection["samples_after_onset"] = first
        return run

    def report(self, version: int, since: datetime) -> Path:
        """The drift report of ``version``'s traffic so far, as one HTML file."""
        from gyre.models import ReferenceProfile
        from gyre.models._manifest import MANIFEST_FILE, ModelManifest
        from gyre.monitoring import (
            DriftOptions,
            MonitorReport,
            drift_over_time,
            log_windows,
            render_html,
        )

        folder = self.registry.download(f"models:/{MODEL_NAME}/{version}")
        manifest = ModelManifest.read(folder / MANIFEST_FILE)
        reference = ReferenceProfile.load(folder / (manifest.reference_profile or ""))
        rows = max(self.sizes.calm // 3, 100)
        windows, outputs = log_windows(
            self.registry.artifact_store,
            MODEL_NAME,
            reference,
            version=version,
            since=since,
            until=datetime.now(UTC),
            rows=rows,
        )
        per_window, overall = drift_over_time(
            reference, windows, DriftOptions(drift_share=DRIFT_SHARE), outputs_reference=outputs
        )
        report = MonitorReport(MODEL_NAME, version, f"{rows} rows", per_window, overall)
        path = config.gyre_home() / "demo-drift-report.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(report), encoding="utf-8")
        drifted = [w for w in per_window if w.features.dataset_drift]
        # which columns, by how many of those windows (the ones the monitor named lead)
        columns = Counter(c for w in drifted for c in w.features.drifted).most_common()
        named = f" (columns: {', '.join(f'{c} in {n}' for c, n in columns)})" if columns else ""
        console.print(
            f"drift report: {len(per_window)} windows of {rows} predictions, {len(drifted)} "
            f"drifted{named} → [bold]{path}[/]",
            soft_wrap=True,
        )
        return path

    def retrain(self, reason: str, since: datetime) -> int | None:
        from gyre.loop import retrain

        with console.status(
            "retraining on the fresh labelled traffic (gather → split → fit → register → gate)"
        ):
            result = retrain.run(
                params={
                    "model": MODEL_NAME,
                    "since_ms": int(since.timestamp() * 1000),  # what came after the change
                    "reason": reason,
                    "seed": self.seed,
                    "min_rows": 200,
                    "tracking_uri": self.uri,
                    "artifact_uri": self.artifact_uri,
                },
                tracking_uri=self.uri,
                experiment="demo-retraining",
            )
        verdict = result.load("gate")
        style = "green" if verdict["verdict"] == "blessed" else "red"
        new = self.registry.store.get_model_version_by_alias(MODEL_NAME, "challenger").version
        console.print(
            f"pipeline run {result.run_id[:8]}: {len(result.steps)} steps · gate "
            f"[bold {style}]{verdict['verdict']}[/] · {verdict['metric']} "
            f"{verdict['value']:.3f} vs champion {verdict['champion_value']:.3f} on "
            f"{verdict['holdout_rows']} fresh rows"
        )
        return new if verdict["verdict"] == "blessed" else None

    def reload(self) -> dict[str, Any]:
        answer = self.http.post("/admin/reload", json={})
        answer.raise_for_status()
        return dict(answer.json())

    def canary(self) -> Any:
        from gyre.loop import CanaryPolicy, canary_step

        self.log.flush()
        self.log.compact()
        policy = CanaryPolicy(min_labelled=150, margin=0.02)
        verdict = canary_step(self.registry, MODEL_NAME, policy=policy)
        style = {"promote": "green", "rollback": "red"}.get(verdict.decision, "yellow")
        console.print(f"canary: [bold {style}]{verdict.decision}[/] — {verdict.reason}")
        return verdict

    # -- plumbing -----------------------------------------------------------------------------

    def _progress(self) -> Progress:
        return Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    def close(self) -> None:
        for closer in ("http", "server", "log"):
            thing = getattr(self, closer, None)
            if thing is not None:
                (thing.stop if closer == "server" else thing.close)()
        fluent.set_tracking_uri(None)


class _ServerThread:
    """uvicorn in a background thread on a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        from gyre.serving._protocol import thread_config

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(thread_config(app))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        import httpx

        self._thread.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise InvalidArgument(f"the demo's prediction server at {self.url} did not start")
            time.sleep(0.05)  # polling the health probe, with a deadline

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()


def run_demo(
    seed: int, tracking_uri: str | None, fast: bool = False, serve_ui: bool = False
) -> None:
    _require_sklearn()
    demo = Demo(seed, tracking_uri, fast)
    console.print(
        Panel.fit(
            "[bold]gyre demo[/] — track, register, gate, serve, monitor, detect drift, "
            "retrain, canary, promote",
            border_style="cyan",
        )
    )
    try:
        _run(demo)
    finally:
        demo.close()
        demo.registry.close()
    if serve_ui:
        _serve_ui(demo.uri)


def _run(demo: Demo) -> None:
    sizes = demo.sizes
    console.rule("1 · track")
    best, holdout = demo.track()
    console.rule("2 · register and gate")
    v1 = demo.register(best, holdout)
    console.rule("3 · serve and monitor")
    demo.serve()
    demo.monitor()
    console.rule("4 · traffic")
    demo.served_since = datetime.now(UTC)
    demo.traffic("before the change", sizes.calm, changed=False)
    calm = demo.run_monitor()
    console.print("monitor: " + ", ".join(f"{f.check} {f.status}" for f in calm.findings))
    onset = datetime.now(UTC)
    console.print(
        "[bold yellow]the world changes[/]: charges rise, support calls mean something else"
    )
    demo.traffic("after the change", sizes.drifted, changed=True)
    console.rule("5 · detect")
    run = demo.detect(sizes.calm)
    incidents = sorted({a.incident_id for a in run.alerts if a.incident_id is not None})
    if incidents:
        console.print(
            f"[red]{len(run.alerts)} alert(s), incident(s) {', '.join(map(str, incidents))} "
            "opened[/] (one per problem: a repeat joins its incident)"
        )
    demo.report(v1, demo.served_since)
    console.rule("6 · retrain")
    reasons = "; ".join(a.message for a in run.alerts) or "scheduled"
    v2 = demo.retrain(reasons, onset)
    if v2 is not None:
        console.rule("7 · canary")
        demo.reload()
        console.print(f"server reloaded: challenger v{v2} takes {CANARY_PERCENT}% of requests")
        demo.traffic("canary", sizes.canary, changed=True)
        verdict = demo.canary()
        if verdict.decision == "promote":
            demo.reload()
            for incident_id in incidents:
                demo.monitoring.update_incident(
                    incident_id,
                    "resolve",
                    actor="gyre-demo",
                    note=f"retrained; v{v2} promoted after a canary ({verdict.reason})",
                )
        demo.traffic("after recovery", sizes.after, changed=True)
    console.rule("8 · summary")
    _summary(demo, v1, incidents[0] if incidents else None)


def _summary(demo: Demo, v1: int, incident_id: int | None) -> None:
    table = Table("measure", "value", title="the loop, end to end")
    by_name = {p.name: p for p in demo.phases}
    delay = demo.detection.get("samples_after_onset")
    table.add_row(
        "drift detected",
        f"{delay} labelled predictions after the change" if delay else "by the drift checks",
    )
    for label, name in (
        ("accuracy before the change", "before the change"),
        (f"accuracy during drift (v{v1})", "after the change"),
        ("accuracy during the canary", "canary"),
        ("accuracy after recovery", "after recovery"),
    ):
        phase = by_name.get(name)
        if phase is not None and phase.accuracy is not None:
            table.add_row(label, f"{phase.accuracy:.3f} ({phase.rows} predictions)")
    aliases = demo.registry.get_model(MODEL_NAME).aliases
    table.add_row("versions", ", ".join(f"{a} → v{v}" for a, v in sorted(aliases.items())))
    table.add_row("elapsed", f"{time.perf_counter() - demo.started:.0f} s")
    console.print(table)
    console.rule("what moved the versions (audit log)")
    for entry in reversed(demo.registry.audit_log(MODEL_NAME, max_results=50)):
        if entry.action in (
            "alias.set",
            "canary.promote",
            "canary.rollback",
            "retrain.challenger",
            "retrain.rejected",
        ):
            arrow = (
                f"v{entry.from_version or '-'} → v{entry.to_version}" if entry.to_version else ""
            )
            console.print(
                f"  {entry.action:<18} {entry.alias or '':<10} {arrow:<10} {entry.reason}",
                soft_wrap=True,
                markup=False,
            )
    console.rule("where it lives")
    console.print(f"[bold]metadata  [/]{demo.uri}", soft_wrap=True)
    console.print(f"[bold]artifacts [/]{demo.artifact_uri}", soft_wrap=True)
    console.rule("next")
    for line in (
        "gyre runs list -e demo -o 'metrics.roc_auc DESC'",
        f"gyre models show {MODEL_NAME}",
        f"gyre models audit {MODEL_NAME}",
        f"gyre predictions query models:/{MODEL_NAME}@champion --since 1h",
        f"gyre monitor report models:/{MODEL_NAME}/{v1} --window 1h --html drift.html",
        f"gyre incidents show {incident_id}" if incident_id else "gyre incidents list --all",
        "gyre pipeline runs",
        "gyre server        # API, docs at /docs, dashboard at http://127.0.0.1:5050/",
    ):
        console.print(f"  {line}", soft_wrap=True, markup=False)


def _serve_ui(uri: str) -> None:
    """``gyre server`` on the demo's data until Ctrl-C."""
    from gyre.cli._server_cmds import server

    console.print("starting gyre server with the demo's data (Ctrl-C stops it)")
    server(tracking_uri=uri, monitors=True)

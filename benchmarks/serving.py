"""Serving benchmark: gyre's prediction server against MLflow's and MLServer's, in one run.

Usage (with the Python that has gyre installed, and ``wrk`` on the PATH)::

    python benchmarks/serving.py [--quick] [--json out.json] [--write-docs]

Method
------
Two scikit-learn estimators, ``LogisticRegression`` and ``HistGradientBoostingClassifier``,
are fitted here on 10,000 rows of 20 numeric features from ``make_classification``
(seed 0) and written once with joblib. Every server serves those same fitted estimators:

- **gyre**: ``gyre serve <package>`` (package from ``gyre.models.save_model(est, dir,
  input_example=X[:5])``), with its defaults: prediction logging and its JSON access log on,
  batching up to 64 rows within 2 ms. Driven on OIP v2 (``POST /v2/models/<name>/infer``)
  and on ``POST /predict/<name>`` (``{"records": [...]}``); then restarted with ``--no-log``
  and driven on OIP v2 again, which prices the prediction log.
- **MLflow**: ``mlflow models serve -m <model> --env-manager local -w N`` (model from
  ``mlflow.sklearn.save_model(est, dir, input_example=X[:5])`` run in MLflow's venv),
  driven on ``POST /invocations`` with ``{"dataframe_split": ...}``.
- **MLServer**: ``mlserver start <repo>`` (``model-settings.json`` with
  ``mlserver_sklearn.SKLearnModel`` beside the joblib file; ``parallel_workers: N``),
  driven on OIP v2.
- **bare ASGI**: ``benchmarks/serving_echo.py``, an app that reads the body and answers a
  fixed JSON document, under the same uvicorn settings as ``gyre serve``: the ceiling any
  Python ASGI server reaches on this machine.

Each runs from its own interpreter (MLflow and MLServer in cached venvs under
``~/.cache/gyre-bench/``, scikit-learn pinned to this interpreter's version), with 1 and
then 2 workers, one model server at a time, on a free 127.0.0.1 port, with one thread per
native library (``OMP_NUM_THREADS=1`` etc.; ``--threads``); readiness is polled with a
deadline and the server's process group is killed afterwards, also on error or Ctrl-C.
Before timing, a sample of requests (64 one-row and 8 64-row requests) is checked: every
prediction must equal the in-process estimator's, or the server fails the run. The echo app
stays up, idle, through each worker-count block and is measured again (1 row, c=64) right
after each gyre server, so gyre is held to a ceiling measured minutes, not half an hour,
apart from it.

Each server starts only once the rest of the machine is idle (< 0.25 cores busy, waiting up
to ``--quiet-wait`` seconds), and a cell during which more than that was busy with neither
the server nor wrk is measured once more after such a wait: on a shared machine another
benchmark or a test suite must not be what is measured.

The load generator is ``wrk`` (see ``serving_load.py``), a separate C process with one
thread and ``c`` keep-alive connections in a closed loop, the same for every server. Four
loads per server: one row per request at concurrency 1, 8 and 64, and 64 rows per request
at concurrency 8; each is a warm-up (2 s, untimed) and then 10 s measured (``--quick``: 1 s
and 3 s). Reported: requests/s, rows/s, p50 and p99 latency, errors (socket errors,
timeouts, status >= 400), and the server's CPU time per request. The machine's cores are
shared by the server and wrk; wrk's own CPU time is recorded too. ``--profile DIR`` adds
py-spy profiles of gyre (``serving_profile.py``), from extra runs outside the tables.

Targets (issue #4): with 1-row requests at concurrency 64 gyre answers >= 50x MLflow's
requests/s and >= half the bare-ASGI ceiling's; gyre's p50 at concurrency 1 is <= 1/10 of
MLflow's; prediction logging costs <= 10% throughput (gyre vs ``gyre --no-log``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # benchmarks/ is not a package: found through sys.path
    BenchError,
    bench_parser,
    comma_choices,
    fmt_seconds,
    machine_info,
    replace_section,
    server,
)
from serving_load import (
    WRK_LUA,
    LoadResult,
    Protocol,
    background_cores,
    check_answers,
    mlflow_split,
    oip_v2,
    records,
    run_wrk,
    wrk_path,
)
from serving_peers import (
    ServerSpec,
    echo_server,
    gyre_cli,
    gyre_server,
    mlflow_server,
    mlflow_venv,
    mlserver_server,
    mlserver_venv,
    save_mlflow_model,
    stack_versions,
    write_mlserver_repo,
)
from serving_profile import finish, py_spy, record, summarize

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DOCS_START = "<!-- serving-results:start (written by benchmarks/serving.py --write-docs) -->"
DOCS_END = "<!-- serving-results:end -->"

N_FEATURES = 20
# Column names in the bodies that name them (MLflow's dataframe_split, gyre's records): the
# models were fitted on an unnamed array, which both servers map by position.
COLUMNS = [str(i) for i in range(N_FEATURES)]
TRAIN_ROWS = 10_000
SEED = 0
MODELS = ("logreg", "hgb")
MODEL_CLASSES = {"logreg": "LogisticRegression", "hgb": "HistGradientBoostingClassifier"}
GYRE, GYRE_NOLOG, MLFLOW, MLSERVER, ECHO = (
    "gyre",
    "gyre --no-log",
    "MLflow",
    "MLServer",
    "bare ASGI",
)
# With two cores, two workers and wrk, OpenMP's spinning threads (HistGradientBoosting
# predicts with OpenMP over all cores) starve everything else: each server process is held
# to one thread per native library, as multi-process servers are usually run.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CHECK_ONE_ROW, CHECK_BATCHES = 64, 8  # requests whose answers are checked before timing
ONE_ROW_BODIES, BATCH_BODIES = 1024, 64  # distinct bodies wrk cycles through


@dataclass(frozen=True)
class Load:
    rows: int  # rows per request
    connections: int

    @property
    def label(self) -> str:
        return f"{self.rows} row{'s' if self.rows > 1 else ''}, c={self.connections}"


LOADS = (Load(1, 1), Load(1, 8), Load(1, 64), Load(64, 8))
TARGET_LOAD = Load(1, 64)  # where the throughput targets are read
LATENCY_LOAD = Load(1, 1)  # where the latency target is read
ECHO_ENDPOINT = ("OIP v2", oip_v2("echo"), "oip-echo")
LOGGING_LOADS = (TARGET_LOAD, Load(64, 8))  # where the logging target is read ...
LOGGING_ROUNDS = 5  # ... from this many turns of each gyre server, half a cell long each
PROFILE_LOADS = {"OIP v2": (LATENCY_LOAD, TARGET_LOAD, Load(64, 8)), "/predict": (TARGET_LOAD,)}


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    workers: tuple[int, ...]
    warmup: float  # seconds of untimed load before each measured cell
    seconds: float  # measured seconds per cell
    budget: float  # seconds for all measurements; later servers are cut past it
    quiet_cores: float = 0.25  # a server starts once the rest of the machine is this idle ...
    quiet_wait: float = 600.0  # ... or after this many seconds of waiting, with a warning


FULL = Plan(MODELS, (1, 2), 2.0, 10.0, 45 * 60.0)
QUICK = Plan(MODELS, (1, 2), 1.0, 3.0, 15 * 60.0, quiet_wait=60.0)


@dataclass
class Cell:
    """One server, one endpoint, one load: measured, failed or cut."""

    model: str  # "" for the echo app
    workers: int
    server: str
    endpoint: str
    load: Load
    result: LoadResult | None = None
    missing: str = ""  # why there is no result

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "workers": self.workers,
            "server": self.server,
            "endpoint": self.endpoint,
            "rows_per_request": self.load.rows,
            "connections": self.load.connections,
            "result": self.result.as_json() if self.result else None,
            "missing": self.missing,
        }


@dataclass
class Target:
    """One target of issue #4, for one model and worker count."""

    label: str
    gyre: str
    reference: str
    ratio: str
    target: str
    met: bool | None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


# -- data and models -----------------------------------------------------------------------


@dataclass
class Served:
    """One fitted estimator in every tool's format, and the requests that probe it."""

    name: str
    estimator: Any
    gyre_package: Path
    mlflow_model: Path
    mlserver_repo: Path


def make_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=TRAIN_ROWS + ONE_ROW_BODIES + BATCH_BODIES * 64,
        n_features=N_FEATURES,
        n_informative=10,
        random_state=SEED,
    )
    return X, y


def fit(name: str, X: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    estimator = (
        LogisticRegression(max_iter=1000)
        if name == "logreg"
        else HistGradientBoostingClassifier(random_state=SEED)
    )
    return estimator.fit(X[:TRAIN_ROWS], y[:TRAIN_ROWS])


def prepare_model(
    name: str, X: np.ndarray[Any, Any], y: np.ndarray[Any, Any], work: Path, mlflow_python: Path
) -> Served:
    import joblib

    import gyre.models

    estimator = fit(name, X, y)
    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    joblib_file = folder / f"{name}.joblib"
    joblib.dump(estimator, joblib_file)
    example = folder / f"{name}-example.npy"
    np.save(example, X[:5])
    estimator = joblib.load(joblib_file)  # serve exactly what every tool loads
    package = folder / "gyre" / name  # gyre serves a package folder under the folder's name
    gyre.models.save_model(estimator, package, input_example=X[:5])
    mlflow_model = folder / "mlflow" / name
    save_mlflow_model(mlflow_python, joblib_file, example, mlflow_model, work)
    repo = write_mlserver_repo(joblib_file, name, folder / "mlserver" / name)
    return Served(name, estimator, package, mlflow_model, repo)


@dataclass
class Requests:
    """The rows every server is sent, and the bodies files wrk cycles through."""

    one_row: list[np.ndarray[Any, Any]]
    batches: list[np.ndarray[Any, Any]]
    folder: Path
    _files: dict[tuple[str, int], Path] = field(default_factory=dict)

    @classmethod
    def from_data(cls, X: np.ndarray[Any, Any], folder: Path) -> Requests:
        pool = X[TRAIN_ROWS:]
        one_row = [pool[i : i + 1] for i in range(ONE_ROW_BODIES)]
        rest = pool[ONE_ROW_BODIES:]
        batches = [rest[i * 64 : (i + 1) * 64] for i in range(BATCH_BODIES)]
        folder.mkdir(parents=True, exist_ok=True)
        return cls(one_row, batches, folder)

    def bodies(self, key: str, protocol: Protocol, rows: int) -> Path:
        """The bodies file for ``protocol`` (``key`` names it) with ``rows`` rows a request."""
        path = self._files.get((key, rows))
        if path is None:
            path = self.folder / f"{key}-{rows}.jsonl"
            chosen = self.one_row if rows == 1 else self.batches
            path.write_bytes(b"\n".join(protocol.encode(r) for r in chosen) + b"\n")
            self._files[(key, rows)] = path
        return path

    def check(self, base_url: str, protocol: Protocol, estimator: Any) -> int:
        sample = self.one_row[:CHECK_ONE_ROW] + self.batches[:CHECK_BATCHES]
        expected = [estimator.predict(rows) for rows in sample]
        return check_answers(base_url, protocol, sample, expected)


# -- the measurements ----------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        tmp: Path,
        plan: Plan,
        mlflow_python: Path,
        mlserver_python: Path,
        gyre_extra: Sequence[str],
        gyre_missing: str = "",
        profile_dir: Path | None = None,
        threads: int = 1,
    ) -> None:
        self.tmp = tmp
        # every server gets the same thread limits for its native libraries (0: none)
        self.thread_env = {v: str(threads) for v in THREAD_VARS} if threads else {}
        self.profile_dir = profile_dir  # py-spy profiles of gyre go here, when given
        self.profiles: list[str] = []
        self.gyre_missing = gyre_missing  # why gyre cannot be measured, if it cannot
        self.plan = plan
        self.mlflow_python = mlflow_python
        self.mlserver_python = mlserver_python
        self.gyre_extra = list(gyre_extra)
        self.script = tmp / "wrk.lua"
        self.script.write_text(WRK_LUA)
        self.cells: list[Cell] = []
        # (workers, model) -> the echo ceiling measured again right after gyre served model
        self.adjacent: dict[tuple[int, str], LoadResult] = {}
        # (workers, model, load) -> {gyre: [runs], gyre --no-log: [runs]}, driven by turns
        self.paired: dict[tuple[int, str, Load], dict[str, list[LoadResult]]] = {}
        self.failures: list[str] = []
        self.cut: list[str] = []
        self.checked: dict[str, int] = {}
        self.deadline = time.monotonic() + plan.budget
        self.per_cell = plan.warmup + plan.seconds + 0.5
        self.waited = 0.0  # seconds spent waiting for a quiet machine (not in the budget)
        self.noisy: list[str] = []  # servers started on a machine busy with something else

    def _dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, served: dict[str, Served], requests: Requests) -> None:
        for workers in self.plan.workers:
            # the echo app stays up (idle) through the block: right after each gyre server
            # its ceiling is measured again, so the two compared numbers are minutes apart
            # at most, whatever the machine drifted meanwhile
            with contextlib.ExitStack() as keep:
                echo = echo_server(workers, self._dir("echo"))
                proc = self.measure(echo, "", workers, [ECHO_ENDPOINT], requests, None, keep)
                for name in self.plan.models:
                    model = served[name]
                    # both gyre servers stay up until their logging cost is measured
                    with contextlib.ExitStack() as gyres:
                        on = self.model_server(GYRE, model, workers, requests, gyres)
                        if on is not None and proc is not None and proc.poll() is None:
                            self._ceiling_again(echo, proc, workers, name, requests)
                        off = self.model_server(GYRE_NOLOG, model, workers, requests, gyres)
                        if on is not None and off is not None:
                            self._logging_cost(on, off, workers, name, requests)
                    self.model_server(MLFLOW, model, workers, requests)
                    self.model_server(MLSERVER, model, workers, requests)

    def _logging_cost(
        self,
        on: tuple[ServerSpec, subprocess.Popen[bytes]],
        off: tuple[ServerSpec, subprocess.Popen[bytes]],
        workers: int,
        model: str,
        requests: Requests,
    ) -> None:
        """Drive gyre and ``gyre --no-log`` by turns, LOGGING_ROUNDS times each, on the loads
        the logging target reads: a pair of numbers taken seconds apart, not minutes, is
        what a cost of a few percent can be told from the machine's drift with."""
        protocol, key = oip_v2(model), f"oip-{model}"
        seconds = max(1.0, self.plan.seconds / 2)
        for load in LOGGING_LOADS:
            runs: dict[str, list[LoadResult]] = {GYRE: [], GYRE_NOLOG: []}
            for _ in range(LOGGING_ROUNDS):
                for spec, proc in (on, off):
                    what = f"{spec.tool} ({model}, {workers}w) {load.label}, by turns"
                    try:
                        r = self._measured(
                            spec, proc.pid, protocol, key, load, requests, what, seconds
                        )
                    except (BenchError, subprocess.SubprocessError, OSError) as exc:
                        self.failures.append(f"{what}: {exc}")
                        print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
                        return
                    runs[spec.tool].append(r)
            self.paired[(workers, model, load)] = runs
            medians = {
                tool: statistics.median(r.rows_per_second for r in results)
                for tool, results in runs.items()
            }
            print(
                f"[gyre logging cost ({model}, {workers}w) {load.label}, {LOGGING_ROUNDS} turns "
                f"each] rows/s median: log {medians[GYRE]:,.0f}, --no-log "
                f"{medians[GYRE_NOLOG]:,.0f}",
                flush=True,
            )

    def _ceiling_again(
        self,
        spec: ServerSpec,
        proc: subprocess.Popen[bytes],
        workers: int,
        model: str,
        requests: Requests,
    ) -> None:
        _, protocol, key = ECHO_ENDPOINT
        what = f"{ECHO} ({workers} worker{'s' if workers > 1 else ''}) after gyre ({model})"
        try:
            r = self._measured(spec, proc.pid, protocol, key, TARGET_LOAD, requests, what)
        except (BenchError, subprocess.SubprocessError, OSError) as exc:
            self.failures.append(f"{what}: {exc}")
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
            return
        self.adjacent[(workers, model)] = r
        print(f"[{what}] {TARGET_LOAD.label}: {r.rps:,.0f} req/s", flush=True)

    def model_server(
        self,
        tool: str,
        model: Served,
        workers: int,
        requests: Requests,
        keep: contextlib.ExitStack | None = None,
    ) -> tuple[ServerSpec, subprocess.Popen[bytes]] | None:
        """Measure ``tool`` serving ``model`` (kept running in ``keep`` when given); None
        when it could not be measured."""
        name = model.name
        endpoints: list[tuple[str, Protocol, str]]
        if tool in (GYRE, GYRE_NOLOG):
            spec = gyre_server(
                model.gyre_package,
                name,
                workers,
                log=tool == GYRE,
                home=self._dir(f"gyre-home-{name}-{workers}-{'log' if tool == GYRE else 'nolog'}"),
                extra=self.gyre_extra,
            )
            endpoints = [("OIP v2", oip_v2(name), f"oip-{name}")]
            if tool == GYRE:
                endpoints.append(("/predict", records(name, COLUMNS), f"records-{name}"))
        elif tool == MLFLOW:
            spec = mlflow_server(
                self.mlflow_python, model.mlflow_model, workers, self._dir("mlflow")
            )
            endpoints = [("/invocations", mlflow_split(COLUMNS), "mlflow")]
        else:
            spec = mlserver_server(self.mlserver_python, model.mlserver_repo, name, workers)
            endpoints = [("OIP v2", oip_v2(name), f"oip-{name}")]
        proc = self.measure(spec, name, workers, endpoints, requests, model.estimator, keep)
        return None if proc is None else (spec, proc)

    def measure(
        self,
        spec: ServerSpec,
        model: str,
        workers: int,
        endpoints: Sequence[tuple[str, Protocol, str]],
        requests: Requests,
        estimator: Any,
        keep: contextlib.ExitStack | None = None,
    ) -> subprocess.Popen[bytes] | None:
        """Start ``spec``, check its answers on every endpoint, then run every load, and
        stop it, unless ``keep`` is given: the server then lives as long as that stack.
        Returns the server's process, or None when it failed or was not measured."""
        planned = [
            Cell(model, workers, spec.tool, ep, load) for ep, _, _ in endpoints for load in LOADS
        ]
        what = f"{spec.tool} ({model or 'no model'}, {workers} worker{'s' if workers > 1 else ''})"
        if spec.tool in (GYRE, GYRE_NOLOG) and self.gyre_missing:
            for cell in planned:
                cell.missing = self.gyre_missing
            self.cells.extend(planned)
            print(f"[{what}] {self.gyre_missing}", flush=True)
            return None
        extra = 4 if spec.tool == GYRE and self.profile_dir is not None else 0
        if spec.tool == GYRE:  # the echo again, and the logging turns with --no-log
            extra += 1 + len(LOGGING_LOADS) * LOGGING_ROUNDS
        needed = (len(planned) + extra) * self.per_cell + 20
        if time.monotonic() + needed > self.deadline:
            reason = f"cut: the time budget ({self.plan.budget / 60:.0f} min) ran out"
            for cell in planned:
                cell.missing = reason
            self.cut.append(what)
            self.cells.extend(planned)
            print(f"[{what}] {reason}", flush=True)
            return None
        print(f"[{what}] {shlex.join(spec.cmd)}", flush=True)
        self._await_quiet(what)
        log = self.tmp / "logs" / f"{spec.tool.replace(' ', '_')}-{model}-{workers}.log"
        log.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        proc: subprocess.Popen[bytes] | None = None
        try:
            with contextlib.ExitStack() as own:
                proc = (keep or own).enter_context(
                    server(
                        spec.cmd,
                        spec.ready_url,
                        cwd=spec.cwd,
                        log=log,
                        env={**self.thread_env, **spec.env},
                        ready_timeout=spec.ready_timeout,
                    )
                )
                print(f"  ready in {time.perf_counter() - started:.1f} s", flush=True)
                cells = iter(planned)
                for endpoint, protocol, key in endpoints:
                    if estimator is not None:
                        n = requests.check(spec.base_url, protocol, estimator)
                        self.checked[f"{what} {endpoint}"] = n
                        print(f"  {endpoint}: {n} rows answered correctly", flush=True)
                    for load in LOADS:
                        cell = next(cells)
                        label = f"{what} {endpoint} {load.label}"
                        r = self._measured(spec, proc.pid, protocol, key, load, requests, label)
                        cell.result = r
                        print(
                            f"  {endpoint:12} {load.label:12} {r.rps:10,.0f} req/s "
                            f"p50 {fmt_seconds(r.p50):>9} p99 {fmt_seconds(r.p99):>9} "
                            f"errors {r.errors}",
                            flush=True,
                        )
                if spec.tool == GYRE and self.profile_dir is not None:
                    for endpoint, protocol, key in endpoints:
                        for load in PROFILE_LOADS[endpoint]:
                            self._profile(spec, proc.pid, protocol, key, load, requests, model)
        except (BenchError, subprocess.SubprocessError, OSError) as exc:
            detail = str(exc)
            if "did not answer" in detail and log.exists():  # the log goes with the temp dir
                tail = log.read_text(errors="replace").splitlines()[-15:]
                detail += "\nlast lines of the server's log:\n" + "\n".join(tail)
            self.failures.append(f"{what}: {detail}")
            print(f"  FAILED: {detail}", file=sys.stderr, flush=True)
            reason = next(line for line in str(exc).splitlines() if line.strip())[:200]
            for cell in planned:
                if cell.result is None:
                    cell.missing = f"failed: {reason}"
            proc = None
        self.cells.extend(planned)
        return proc

    def _measured(
        self,
        spec: ServerSpec,
        pgid: int,
        protocol: Protocol,
        key: str,
        load: Load,
        requests: Requests,
        what: str,
        seconds: float | None = None,
    ) -> LoadResult:
        """One cell; measured once more, after a wait for quiet, when more than
        ``plan.quiet_cores`` were busy elsewhere meanwhile."""
        r = self._load(spec, pgid, protocol, key, load, requests, seconds)
        if r.other_cores > self.plan.quiet_cores:
            print(f"  again: {r.other_cores:.2f} cores were busy elsewhere", flush=True)
            self._await_quiet(what, again=True)
            r = self._load(spec, pgid, protocol, key, load, requests, seconds)
            r.repeated = True
        return r

    def _profile(
        self,
        spec: ServerSpec,
        pid: int,
        protocol: Protocol,
        key: str,
        load: Load,
        requests: Requests,
        model: str,
    ) -> None:
        """One more, unreported, run of ``load`` with py-spy sampling gyre's processes."""
        assert self.profile_dir is not None
        exe = py_spy()
        if exe is None:
            note = "no profile: py-spy is not installed (pip install py-spy)"
            if note not in self.profiles:
                self.profiles.append(note)
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        workers = spec.cmd[spec.cmd.index("--workers") + 1]
        endpoint = protocol.path.split("/")[1]  # "v2" or "predict"
        label = f"gyre-{model}-{workers}w-{endpoint}-{load.rows}r-c{load.connections}"
        raw = self.profile_dir / f"{label}.raw.txt"
        sampler = record(exe, pid, self.plan.seconds + 1, raw)
        time.sleep(1.0)  # let py-spy attach to every process first
        result = run_wrk(
            spec.base_url,
            protocol.path,
            requests.bodies(key, protocol, load.rows),
            self.script,
            connections=load.connections,
            seconds=self.plan.seconds,
            rows_per_request=load.rows,
        )
        finish(sampler, raw, timeout=60)
        summary = self.profile_dir / f"{label}.txt"
        header = f"{label}: {protocol.path}, {load.label}, {result.rps:,.0f} req/s while sampled\n"
        summary.write_text(header + summarize(raw))
        self.profiles.append(str(summary))
        print(f"  profile ({result.rps:,.0f} req/s while sampled): {summary}", flush=True)

    def _await_quiet(self, what: str, again: bool = False) -> None:
        """Wait until the rest of the machine is idle (another benchmark, a test suite, a
        build would take cores from the server and wrk), up to ``plan.quiet_wait``.
        ``again``: a server of ours is running, idle; only the wait is new."""
        started = time.monotonic()
        busy = background_cores()
        told = False
        while busy > self.plan.quiet_cores and time.monotonic() - started < self.plan.quiet_wait:
            if not told:
                print(
                    f"  waiting: {busy:.2f} cores busy with other work "
                    f"(up to {self.plan.quiet_wait:.0f} s)",
                    flush=True,
                )
                told = True
            time.sleep(3)
            busy = background_cores()
        waited = time.monotonic() - started
        self.waited += waited
        self.deadline += waited
        if busy > self.plan.quiet_cores:
            verb = "measured again" if again else "started"
            self.noisy.append(f"{what}: {verb} with {busy:.2f} cores busy elsewhere")
            print(f"  WARNING: starting anyway, {busy:.2f} cores busy elsewhere", flush=True)

    def _load(
        self,
        spec: ServerSpec,
        pgid: int,
        protocol: Protocol,
        key: str,
        load: Load,
        requests: Requests,
        seconds: float | None = None,
    ) -> LoadResult:
        """Warm up (untimed), then drive ``load`` for ``seconds`` (default: the plan's)."""
        bodies = requests.bodies(key, protocol, load.rows)

        def drive(seconds: float, measured: bool) -> LoadResult:
            return run_wrk(
                spec.base_url,
                protocol.path,
                bodies,
                self.script,
                connections=load.connections,
                seconds=seconds,
                rows_per_request=load.rows,
                server_pgid=pgid if measured else None,
            )

        drive(self.plan.warmup, measured=False)
        return drive(seconds or self.plan.seconds, measured=True)


# -- targets -------------------------------------------------------------------------------


def _find(
    cells: Sequence[Cell], model: str, workers: int, server_name: str, endpoint: str, load: Load
) -> LoadResult | None:
    for cell in cells:
        if (cell.model, cell.workers, cell.server, cell.endpoint, cell.load) == (
            model,
            workers,
            server_name,
            endpoint,
            load,
        ):
            return cell.result if cell.result and cell.result.requests else None
    return None


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _rps(r: LoadResult) -> str:
    return f"{r.rps:,.0f} req/s"


def targets(
    cells: Sequence[Cell],
    plan: Plan,
    adjacent: dict[tuple[int, str], LoadResult],
    paired: dict[tuple[int, str, Load], dict[str, list[LoadResult]]],
) -> list[Target]:
    """The targets of issue #4 per worker count and model. The ceiling gyre is held to is
    the echo app measured right after gyre's server (else the block's first); the logging
    cost comes from the runs by turns (else the two servers' cells)."""
    out: list[Target] = []
    one, lat, batch = TARGET_LOAD, LATENCY_LOAD, Load(64, 8)
    for workers in plan.workers:
        block_ceiling = _find(cells, "", workers, ECHO, "OIP v2", one)
        for model in plan.models:
            ceiling = adjacent.get((workers, model), block_ceiling)
            w = f"{model}, {workers}w"
            g = _find(cells, model, workers, GYRE, "OIP v2", one)
            m = _find(cells, model, workers, MLFLOW, "/invocations", one)
            if g and m:
                ratio = g.rps / m.rps
                out.append(
                    Target(
                        f"{w}: req/s, 1 row, c=64, vs MLflow",
                        _rps(g),
                        f"MLflow {_rps(m)}",
                        _x(ratio),
                        ">= 50x",
                        ratio >= 50,
                        {"ratio": ratio},
                    )
                )
            else:
                out.append(_unmeasured(f"{w}: req/s, 1 row, c=64, vs MLflow", ">= 50x"))
            if g and ceiling:
                ratio = g.rps / ceiling.rps
                out.append(
                    Target(
                        f"{w}: req/s, 1 row, c=64, vs bare ASGI",
                        _rps(g),
                        f"bare ASGI {_rps(ceiling)}"
                        + (" (right after gyre)" if (workers, model) in adjacent else ""),
                        f"{ratio:.0%}",
                        ">= 50%",
                        ratio >= 0.5,
                        {"ratio": ratio},
                    )
                )
            else:
                out.append(_unmeasured(f"{w}: req/s, 1 row, c=64, vs bare ASGI", ">= 50%"))
            g1 = _find(cells, model, workers, GYRE, "OIP v2", lat)
            m1 = _find(cells, model, workers, MLFLOW, "/invocations", lat)
            if g1 and m1:
                ratio = g1.p50 / m1.p50
                out.append(
                    Target(
                        f"{w}: p50, 1 row, c=1, vs MLflow",
                        fmt_seconds(g1.p50),
                        f"MLflow {fmt_seconds(m1.p50)}",
                        f"1/{1 / ratio:.1f}",
                        "<= 1/10",
                        ratio <= 0.1,
                        {"ratio": ratio},
                    )
                )
            else:
                out.append(_unmeasured(f"{w}: p50, 1 row, c=1, vs MLflow", "<= 1/10"))
            for load, unit in ((one, "req/s"), (batch, "rows/s")):
                label = f"{w}: logging cost, {load.label} ({unit})"
                turns = paired.get((workers, model, load))
                if turns and turns[GYRE] and turns[GYRE_NOLOG]:
                    on_rate = statistics.median(r.rows_per_second for r in turns[GYRE])
                    off_rate = statistics.median(r.rows_per_second for r in turns[GYRE_NOLOG])
                    how = f" (medians of {len(turns[GYRE])} turns each)"
                else:  # no turns: the two servers' cells of the table
                    on = _find(cells, model, workers, GYRE, "OIP v2", load)
                    off = _find(cells, model, workers, GYRE_NOLOG, "OIP v2", load)
                    if not (on and off):
                        out.append(_unmeasured(label, "<= 10%"))
                        continue
                    on_rate, off_rate, how = on.rows_per_second, off.rows_per_second, ""
                cost = 1 - on_rate / off_rate
                out.append(
                    Target(
                        label,
                        f"{on_rate:,.0f} {unit}",
                        f"--no-log {off_rate:,.0f} {unit}{how}",
                        f"{cost:+.1%} cost",
                        "<= 10%",
                        cost <= 0.10,
                        {"cost": cost, "on": on_rate, "off": off_rate},
                    )
                )
    return out


def _unmeasured(label: str, target: str) -> Target:
    return Target(label, "—", "—", "", target, None)


# -- tables --------------------------------------------------------------------------------

RESULT_HEADERS = (
    "workers",
    "load",
    "server",
    "endpoint",
    "req/s",
    "rows/s",
    "p50",
    "p99",
    "errors",
    "server CPU/req",
    "busy elsewhere",
)
TARGET_HEADERS = ("target", "gyre", "reference", "ratio", "wanted", "verdict")


def result_rows(cells: Sequence[Cell], model: str) -> list[tuple[str, ...]]:
    order = {s: i for i, s in enumerate((ECHO, GYRE, GYRE_NOLOG, MLSERVER, MLFLOW))}
    chosen = [c for c in cells if c.model in ("", model)]
    chosen.sort(
        key=lambda c: (c.workers, LOADS.index(c.load), order[c.server], c.endpoint != "OIP v2")
    )
    rows = []
    for c in chosen:
        r = c.result
        head = (str(c.workers), c.load.label, c.server, c.endpoint)
        if r is None:
            rows.append((*head, c.missing, "", "", "", "", "", ""))
            continue
        cpu = fmt_seconds(r.server_cpu / r.requests) if r.requests else "—"
        errors = str(r.errors) + (f" ({', '.join(r.error_kinds)})" if r.errors else "")
        rows.append(
            (
                *head,
                f"{r.rps:,.0f}",
                f"{r.rows_per_second:,.0f}",
                fmt_seconds(r.p50),
                fmt_seconds(r.p99),
                errors,
                cpu,
                f"{r.other_cores:.2f} cores",
            )
        )
    return rows


def target_rows(found: Sequence[Target]) -> list[tuple[str, ...]]:
    return [(t.label, t.gyre, t.reference, t.ratio, t.target, t.verdict) for t in found]


def print_grid(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        for cells in (headers, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
        return
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold")
    styles = {"met": "green", "NOT met": "bold red"}
    for row in rows:
        cells = list(row)
        if cells[-1] in styles:
            cells[-1] = f"[{styles[cells[-1]]}]{cells[-1]}[/]"
        table.add_row(*cells)
    Console(width=max(140, Console().width)).print(table)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row]
        if cells[-1] in ("met", "NOT met"):
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(
        "Benchmark gyre's prediction server against MLflow's and MLServer's.",
        quick="1 s warm-up, 3 s per cell",
        write_docs=f"rewrite the serving results in {DOCS.relative_to(DOCS.parent.parent)}",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of: {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts (default: 1,2)"
    )
    parser.add_argument(
        "--seconds", type=float, help="measured seconds per cell (default 10; --quick 3)"
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        help="stop starting servers past this many minutes of measuring (default 45; "
        "--quick 15); what was cut is reported",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait, before starting each server, for other work on the machine to "
        "stop (default 600; --quick 60); then it starts anyway and the report says so",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after gyre's cells, run the 1-row c=64 load once more under py-spy and write "
        "the profiles here (not part of the tables)",
    )
    parser.add_argument(
        "--gyre-args",
        default="",
        metavar="ARGS",
        help="more options for every `gyre serve`, e.g. '--no-access-log' (default: none, "
        "gyre's defaults)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS for every server "
        "(default 1; 0 leaves them unset, each library then uses every core)",
    )
    parser.add_argument("--mlflow-spec", help="pip requirement for the MLflow venv")
    parser.add_argument(
        "--mlserver-spec", help="pip requirement for the MLServer venv (default mlserver-sklearn)"
    )
    args = parser.parse_args(argv)
    models = comma_choices(parser, "--models", args.models, MODELS)
    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    except ValueError:
        parser.error(f"--workers: not a list of numbers: {args.workers!r}")
    if not workers or min(workers) < 1:
        parser.error(f"--workers: at least one count, each >= 1, not {args.workers!r}")
    base = QUICK if args.quick else FULL
    args.plan = Plan(
        models,
        workers,
        base.warmup,
        args.seconds or base.seconds,
        args.budget_minutes * 60 if args.budget_minutes else base.budget,
        base.quiet_cores,
        base.quiet_wait if args.quiet_wait is None else args.quiet_wait,
    )
    return args


def gyre_serve_available() -> bool:
    done = subprocess.run(
        [*gyre_cli(), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    return done.returncode == 0 and "--workers" in done.stdout


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so a `kill` stops the servers too, like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    plan: Plan = args.plan
    command = shlex.join(
        ["python", "benchmarks/serving.py", *(argv if argv is not None else sys.argv[1:])]
    )
    wrk = wrk_path()
    gyre_missing = ""
    if not gyre_serve_available():
        gyre_missing = "not measured: `gyre serve` is not available in this interpreter"
        print(f"WARNING: {gyre_missing}; measuring the others only", file=sys.stderr)
    mlflow_python, mlflow_version = mlflow_venv(args.mlflow_spec)
    mlserver_python, mlserver_version = mlserver_venv(args.mlserver_spec)
    gyre_python = Path(sys.executable)
    versions = {
        "gyre": stack_versions(gyre_python, ["gyreml"]),
        "MLflow": stack_versions(mlflow_python, ["mlflow"]),
        "MLServer": stack_versions(mlserver_python, ["mlserver", "mlserver-sklearn"]),
        "wrk": " ".join(
            subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split()[:2]
        ),
    }
    machine = machine_info()
    print(
        f"gyre {versions['gyre']['gyreml']} ({sys.executable}) vs MLflow {mlflow_version} "
        f"and MLServer {mlserver_version}; {machine['nproc']} CPUs, Python {machine['python']}; "
        f"{len(plan.models)} models x workers {plan.workers}, {plan.seconds:.0f} s per cell",
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        X, y = make_data()
        served: dict[str, Served] = {}
        for name in plan.models:
            print(f"[prepare] {name}: {MODEL_CLASSES[name]} in every tool's format", flush=True)
            served[name] = prepare_model(name, X, y, tmp, mlflow_python)
        requests = Requests.from_data(X, tmp / "bodies")
        bench = Bench(
            tmp,
            plan,
            mlflow_python,
            mlserver_python,
            gyre_extra=shlex.split(args.gyre_args),
            gyre_missing=gyre_missing,
            profile_dir=args.profile.resolve() if args.profile else None,
            threads=args.threads,
        )
        if gyre_missing:
            bench.failures.append(gyre_missing)
        with _interrupt_is_failure(bench):
            bench.run(served, requests)
    elapsed = time.perf_counter() - started

    found = targets(bench.cells, plan, bench.adjacent, bench.paired)
    quick = " (--quick)" if args.quick else ""
    print()
    for model in plan.models:
        print_grid(
            f"{MODEL_CLASSES[model]} — serving{quick}",
            RESULT_HEADERS,
            result_rows(bench.cells, model),
        )
    print_grid(f"Targets (issue #4){quick}", TARGET_HEADERS, target_rows(found))
    for what in bench.cut:
        print(f"- cut by the time budget: {what}")
    for what in bench.noisy:
        print(f"- busy machine: {what}")
    for failure in bench.failures:
        print(f"- FAILED: {failure.splitlines()[0]}")
    report = {
        "command": command,
        "quick": args.quick,
        "plan": {
            **plan.__dict__,
            "loads": [load.label for load in LOADS],
            "threads_per_library": args.threads,
        },
        "machine": machine,
        "versions": versions,
        "elapsed_seconds": elapsed,
        "checked_rows": bench.checked,
        "cells": [c.as_json() for c in bench.cells],
        "logging_turns": [
            {
                "workers": w,
                "model": m,
                "load": load.label,
                **{tool: [r.as_json() for r in runs] for tool, runs in turns.items()},
            }
            for (w, m, load), turns in bench.paired.items()
        ],
        "ceiling_after_gyre": [
            {"workers": w, "model": m, **r.as_json()} for (w, m), r in bench.adjacent.items()
        ],
        "targets": [{**t.__dict__, "verdict": t.verdict} for t in found],
        "cut": bench.cut,
        "failures": bench.failures,
        "waited_for_quiet_seconds": bench.waited,
        "noisy": bench.noisy,
        "profiles": bench.profiles,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"raw numbers: {args.json}")
    if args.write_docs:
        replace_section(DOCS, DOCS_START, DOCS_END, docs_section(report, bench.cells, found))
        print(f"results written to {DOCS}")
    return 1 if bench.failures else 0


@contextlib.contextmanager
def _interrupt_is_failure(bench: Bench) -> Iterator[None]:
    """Ctrl-C stops the measuring (servers are already stopped) but keeps the report."""
    try:
        yield
    except KeyboardInterrupt:
        bench.failures.append("interrupted (Ctrl-C): later measurements missing")


def busy_summary(report: dict[str, Any]) -> list[str]:
    """How busy the machine was with other work: one line, not one per cell (the raw JSON
    and the console list each server and cell)."""
    busy = [c["result"]["other_cores"] for c in report["cells"] if c["result"] is not None]
    if not busy:
        return []
    quiet = report["plan"]["quiet_cores"]
    noisy = sum(1 for b in busy if b > quiet)
    line = (
        f"busy machine: {noisy} of {len(busy)} cells were measured with more than {quiet:g} "
        f"cores busy elsewhere (median {statistics.median(busy):.2f}, max {max(busy):.2f} "
        f"of {report['machine']['nproc']} cores); {len(report['noisy'])} starts or repeats "
        f"went ahead on a busy machine after waiting up to {report['plan']['quiet_wait']:.0f} s"
        f" ({report['waited_for_quiet_seconds'] / 60:.0f} min of waiting in all)"
    )
    return [line]


def docs_section(report: dict[str, Any], cells: Sequence[Cell], found: Sequence[Target]) -> str:
    m, v = report["machine"], report["versions"]

    def stack(tool: str, main: str) -> str:
        s = v[tool]
        parts = [f"{main} {s[main]}"] + [
            f"{k} {s[k] or '—'}" for k in ("scikit-learn", "uvicorn", "uvloop", "httptools")
        ]
        return ", ".join(parts)

    plan = report["plan"]
    n = plan["threads_per_library"]
    threads = (
        ", ".join(f"{var}={n}" for var in THREAD_VARS)
        if n
        else "its native libraries' default thread counts"
    )
    lines = [
        f"Command: `{report['command']}`",
        "",
        f"- date: {m['date']}; {plan['warmup']:.0f} s warm-up + {plan['seconds']:.0f} s "
        f"measured per cell; whole run {report['elapsed_seconds'] / 60:.0f} min",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, {m['platform']}",
        f"- Python {m['python']}; load generator {v['wrk']}; every server with {threads}",
        f"- gyre: {stack('gyre', 'gyreml')}",
        f"- MLflow: {stack('MLflow', 'mlflow')}",
        f"- MLServer: {stack('MLServer', 'mlserver')}",
        "",
        "### Targets",
        "",
        markdown(TARGET_HEADERS, target_rows(found)),
    ]
    for model in plan["models"]:
        lines += [
            "",
            f"### {MODEL_CLASSES[model]}",
            "",
            markdown(RESULT_HEADERS, result_rows(cells, model)),
        ]
    extra = [f"cut by the time budget: {c}" for c in report["cut"]]
    extra += [f"failed: {f.splitlines()[0]}" for f in report["failures"]]
    extra += busy_summary(report)
    if extra:
        lines += ["", "In this run:", "", *[f"- {e}" for e in extra]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

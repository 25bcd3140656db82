"""The servers of the serving benchmark: their venvs, their model files, their commands.

Each server runs from its own interpreter: gyre and the bare-ASGI echo from the one running
the benchmark, MLflow and MLServer from cached venvs under ``~/.cache/gyre-bench/`` built by
``_common.peer_venv``. Whatever estimator the benchmark fitted is written once with joblib,
and every tool's model is made from those bytes, so all servers answer with the same fitted
estimator: gyre's package with ``gyre.models.save_model``; MLflow's model with
``mlflow.sklearn.save_model``, run inside the MLflow venv; MLServer's folder as
``model-settings.json`` beside the joblib file itself. The peer venvs' scikit-learn is
pinned to this interpreter's version, so the estimator unpickles identically everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchError, free_port, peer_venv, run_child

__all__ = [
    "ServerSpec",
    "echo_server",
    "ensure_requirements",
    "gyre_server",
    "mlflow_server",
    "mlflow_venv",
    "mlserver_server",
    "mlserver_venv",
    "save_mlflow_model",
    "stack_versions",
]

HERE = Path(__file__).resolve().parent

# MLServer 1.7 calls asyncio.get_event_loop() in its inference-pool workers before any loop
# runs, which uvloop >= 0.22 refuses: every model then fails to load. Its venv keeps the
# last uvloop that allows it.
MLSERVER_EXTRA = ("uvloop<0.22",)


@dataclass
class ServerSpec:
    """One server to start: its command, where it is ready, what it serves."""

    tool: str  # "gyre", "gyre (no log)", "MLflow", "MLServer", "bare ASGI"
    cmd: list[str]
    ready_url: str
    base_url: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0


# -- venvs ---------------------------------------------------------------------------------


def _installed(python: Path, names: Sequence[str]) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=True
    )
    found: dict[str, str | None] = json.loads(done.stdout)
    return found


def ensure_requirements(python: Path, requirements: Sequence[str]) -> None:
    """``pip install`` into ``python``'s venv whichever of ``requirements`` it does not meet."""
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requirements]
    have = _installed(python, [r.name for r in reqs])
    missing = [
        str(r)
        for r in reqs
        if have[r.name] is None or not r.specifier.contains(have[r.name] or "", prereleases=True)
    ]
    if not missing:
        return
    print(f"  pinning {', '.join(missing)} in {python.parent.parent}", flush=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *missing],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise BenchError(f"pip install {' '.join(missing)} failed:\n{done.stdout[-2000:]}")


def _sklearn_pin() -> str:
    import sklearn

    return f"scikit-learn=={sklearn.__version__}"


def mlflow_venv(spec: str | None) -> tuple[Path, str]:
    """MLflow's venv (shared with the tracking benchmark), scikit-learn pinned to ours."""
    python, version = peer_venv("mlflow-venv", "mlflow", spec)
    ensure_requirements(python, [_sklearn_pin()])
    return python, version


def mlserver_venv(spec: str | None) -> tuple[Path, str]:
    """MLServer's venv: ``mlserver-sklearn`` (which brings ``mlserver``), scikit-learn pinned
    to ours, and a uvloop it can run with."""
    python, _ = peer_venv("mlserver-venv", "mlserver-sklearn", spec)
    ensure_requirements(python, [_sklearn_pin(), *MLSERVER_EXTRA])
    version = _installed(python, ["mlserver"])["mlserver"] or "?"
    return python, version


STACK = ("scikit-learn", "numpy", "uvicorn", "uvloop", "httptools", "starlette", "fastapi")


def stack_versions(python: Path, extra: Sequence[str] = ()) -> dict[str, str | None]:
    """Versions of the server stack in ``python``'s environment (None: not installed)."""
    return _installed(python, [*extra, *STACK])


# -- models --------------------------------------------------------------------------------

MLFLOW_SAVE_CHILD = """
import json, logging, sys, warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import joblib
import mlflow.sklearn
import numpy as np
import sklearn

task = json.loads(sys.argv[1])
estimator = joblib.load(task["joblib"])
example = np.load(task["example"])
# MLflow 3 writes skops and refuses types skops does not trust by default (the trees of
# HistGradientBoosting); we made this estimator, so we trust exactly the ones it holds
import skops.io

trusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
extra = {"skops_trusted_types": trusted} if trusted else {}
mlflow.sklearn.save_model(estimator, task["path"], input_example=example, **extra)
result = {"mlflow": mlflow.__version__, "sklearn": sklearn.__version__, "trusted": trusted}
print("BENCH-RESULT " + json.dumps(result), flush=True)
"""


def save_mlflow_model(
    python: Path, joblib_file: Path, example: Path, target: Path, work: Path
) -> dict[str, Any]:
    """Write an MLflow model at ``target`` from the estimator in ``joblib_file``."""
    script = work / "mlflow_save.py"
    script.write_text(MLFLOW_SAVE_CHILD)
    task = {"op": "save", "joblib": str(joblib_file), "example": str(example), "path": str(target)}
    return run_child(python, script, task, cwd=work, timeout=300)


def write_mlserver_repo(joblib_file: Path, name: str, root: Path) -> Path:
    """A model repository holding ``name``: ``<root>/<name>/model-settings.json`` and the
    joblib file beside it."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(joblib_file, folder / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return root


# -- server commands -----------------------------------------------------------------------


def gyre_cli() -> list[str]:
    found = Path(sys.executable).with_name("gyre")
    if found.exists():
        return [str(found)]
    return [sys.executable, "-c", "import sys; from gyre.cli import main; sys.exit(main())"]


def gyre_server(
    package: Path, name: str, workers: int, *, log: bool, home: Path, extra: Sequence[str] = ()
) -> ServerSpec:
    port = free_port()
    cmd = [
        *gyre_cli(),
        "serve",
        str(package),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra,
    ]
    if not log:
        cmd.append("--no-log")
    base = f"http://127.0.0.1:{port}"
    home.mkdir(parents=True, exist_ok=True)
    return ServerSpec(
        tool="gyre" if log else "gyre --no-log",
        cmd=cmd,
        ready_url=f"{base}/v2/models/{name}/ready",
        base_url=base,
        cwd=home,
        env={"GYRE_HOME": str(home)},
    )


def mlflow_server(python: Path, model: Path, workers: int, cwd: Path) -> ServerSpec:
    """``mlflow models serve`` as documented, in the local environment (no env manager)."""
    port = free_port()
    bin_dir = python.parent
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
        "--env-manager",
        "local",
    ]
    base = f"http://127.0.0.1:{port}"
    # the scoring server is started as `uvicorn ...` through the shell: the venv's first
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return ServerSpec("MLflow", cmd, f"{base}/health", base, cwd, env)


def mlserver_server(python: Path, repo: Path, name: str, workers: int) -> ServerSpec:
    """``mlserver start <repo>`` with ``parallel_workers`` inference processes and free
    ports for HTTP, gRPC and metrics; everything else MLServer's defaults."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": workers,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    base = f"http://127.0.0.1:{http_port}"
    cmd = [str(python.parent / "mlserver"), "start", str(repo)]
    # /v2/health/ready says 200 even when a model failed to load: wait for the model itself
    return ServerSpec("MLServer", cmd, f"{base}/v2/models/{name}/ready", base, repo)


def echo_server(workers: int, cwd: Path) -> ServerSpec:
    """The echo app as ``gyre serve`` would serve it (see ``serving_echo.main``)."""
    port = free_port()
    cmd = [sys.executable, str(HERE / "serving_echo.py"), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    return ServerSpec(
        "bare ASGI", cmd, f"{base}/v2/health/ready", base, cwd, env={"PYTHONPATH": str(HERE)}
    )

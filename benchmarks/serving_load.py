"""Load generation for the serving benchmark: request bodies, answer checks, and ``wrk``.

Every server in ``benchmarks/serving.py`` is driven by the same generator, `wrk
<https://github.com/wg/wrk>`_: a C program, so it costs the two-core machine far less CPU
than a Python client would and does not share a GIL with anyone. It runs as a separate
process with one thread and ``c`` keep-alive connections (closed loop: each connection sends
its next request when the previous answer arrived), cycling through a file of prepared POST
bodies with the Lua script below, and reports through the script's ``done`` hook one JSON
line: requests, duration, errors (socket errors, timeouts, and answers with status >= 400)
and latency percentiles. Before any timing, :func:`check_answers` posts a sample of the
same bodies with the standard library and compares every prediction with the in-process
estimator's: a fast server that answers wrongly fails the run instead of winning it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import BenchError

__all__ = [
    "WRK_LUA",
    "LoadResult",
    "Protocol",
    "background_cores",
    "check_answers",
    "group_cpu_seconds",
    "machine_busy_seconds",
    "mlflow_split",
    "oip_v2",
    "records",
    "run_wrk",
    "wrk_path",
]

WRK_PREFIX = "BENCH-WRK "

# One wrk thread: init() pre-formats every request of the bodies file (args[1]) for the
# path args[2]; request() cycles through them; done() prints the numbers as one JSON line.
WRK_LUA = r"""
local prepared = {}
local count = 0
local at = 0

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    if #line > 0 then
      count = count + 1
      prepared[count] = wrk.format("POST", args[2], headers, line)
    end
  end
end

function request()
  at = at % count + 1
  return prepared[at]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


# -- protocols -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """How one server wants rows, and where its predictions are in the answer."""

    name: str  # as the table shows it, e.g. "OIP v2"
    path: str  # URL path the rows are POSTed to
    encode: Callable[[np.ndarray[Any, Any]], bytes]
    decode: Callable[[Any], list[Any]]  # parsed JSON answer -> flat list of predictions


def _floats(rows: np.ndarray[Any, Any]) -> list[list[float]]:
    return [[float(v) for v in row] for row in rows]  # repr round-trips float64 exactly


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def oip_v2(model: str, input_name: str = "input-0") -> Protocol:
    """Open Inference Protocol v2: one FP64 tensor of shape [rows, features]."""

    def encode(rows: np.ndarray[Any, Any]) -> bytes:
        tensor = {
            "name": input_name,
            "shape": list(rows.shape),
            "datatype": "FP64",
            "data": [v for row in _floats(rows) for v in row],
        }
        return _dumps({"inputs": [tensor]})

    def decode(answer: Any) -> list[Any]:
        outputs = answer["outputs"]
        if len(outputs) != 1:  # several outputs: take the labels, by their usual names
            named = {o["name"]: o for o in outputs}
            outputs = [next(named[n] for n in ("predict", "predictions", "label") if n in named)]
        data: list[Any] = outputs[0]["data"]
        return data

    return Protocol("OIP v2", f"/v2/models/{model}/infer", encode, decode)


def mlflow_split(columns: Sequence[str]) -> Protocol:
    """MLflow's scoring server: ``{"dataframe_split": {"columns", "data"}}`` to /invocations."""
    cols = list(columns)

    def encode(rows: np.ndarray[Any, Any]) -> bytes:
        return _dumps({"dataframe_split": {"columns": cols, "data": _floats(rows)}})

    def decode(answer: Any) -> list[Any]:
        predictions: list[Any] = answer["predictions"]
        return predictions

    return Protocol("/invocations", "/invocations", encode, decode)


def records(model: str, columns: Sequence[str] | None) -> Protocol:
    """gyre's ``POST /predict/{name}`` with ``{"records": [...]}``: one object per row keyed
    by ``columns``, or one list per row when ``columns`` is None."""
    cols = list(columns) if columns is not None else None

    def encode(rows: np.ndarray[Any, Any]) -> bytes:
        lists = _floats(rows)
        body = lists if cols is None else [dict(zip(cols, row, strict=True)) for row in lists]
        return _dumps({"records": body})

    def decode(answer: Any) -> list[Any]:
        predictions = answer["predictions"] if isinstance(answer, dict) else answer
        flat: list[Any] = []
        for p in predictions:  # a row's prediction may come as a value, a list or an object
            if isinstance(p, dict):
                p = next(p[k] for k in ("prediction", "predict", "label", "output") if k in p)
            flat.extend(p if isinstance(p, list) else [p])
        return flat

    return Protocol("/predict", f"/predict/{model}", encode, decode)


# -- checking answers ----------------------------------------------------------------------


def post_json(url: str, body: bytes, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode(errors="replace")
        raise BenchError(f"POST {url} answered {exc.code}: {detail}") from None


def check_answers(
    base_url: str,
    protocol: Protocol,
    batches: Sequence[np.ndarray[Any, Any]],
    expected: Sequence[np.ndarray[Any, Any]],
) -> int:
    """POST each batch of rows and compare the predictions with ``expected`` (the in-process
    estimator's); returns the number of rows checked, raises BenchError on any difference."""
    checked = 0
    for rows, want in zip(batches, expected, strict=True):
        answer = post_json(base_url + protocol.path, protocol.encode(rows))
        try:
            got = protocol.decode(answer)
        except (KeyError, TypeError, IndexError, StopIteration) as exc:
            raise BenchError(
                f"{base_url}{protocol.path}: no predictions in {str(answer)[:300]} ({exc!r})"
            ) from None
        want_list = [v.item() if hasattr(v, "item") else v for v in want.ravel()]
        if len(got) != len(want_list) or any(
            _label(g) != _label(w) for g, w in zip(got, want_list, strict=True)
        ):
            raise BenchError(
                f"{base_url}{protocol.path} answered wrongly for {len(rows)} row(s): "
                f"got {str(got)[:200]}, the estimator says {str(want_list)[:200]}"
            )
        checked += len(rows)
    return checked


def _label(value: Any) -> Any:
    """Labels compare equal across JSON encodings: 1, 1.0 and "1" are the same class."""
    with contextlib.suppress(TypeError, ValueError):
        as_float = float(value)
        if as_float.is_integer():
            return int(as_float)
        return as_float
    return value


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """One cell: ``connections`` closed-loop clients for ``seconds``."""

    connections: int
    rows_per_request: int
    requests: int
    seconds: float
    errors: int
    error_kinds: dict[str, int]
    p50: float  # seconds
    p90: float
    p99: float
    max: float
    mean: float
    wrk_cpu: float  # CPU seconds the load generator used
    server_cpu: float  # CPU seconds the server's process group used
    machine_cpu: float  # CPU seconds the whole machine was busy (all processes, kernel)
    repeated: bool = False  # measured again: the machine was busy the first time

    @property
    def other_cores(self) -> float:
        """Cores busy on average with neither the server nor wrk (other processes, and the
        kernel work no process is charged for) while this cell was measured."""
        other = self.machine_cpu - self.server_cpu - self.wrk_cpu
        return max(0.0, other) / self.seconds if self.seconds else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rps * self.rows_per_request

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rps": self.rps,
            "rows_per_second": self.rows_per_second,
            "other_cores": self.other_cores,
        }


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError(
            "wrk, the load generator, is not installed: `apt-get install wrk` (Debian/Ubuntu) "
            "or `brew install wrk` (macOS)"
        )
    return found


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group ``pgid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            # fields[0] is state (stat field 3): pgrp is field 5, utime 14, stime 15
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: user, nice, system, irq,
    softirq; not idle, iowait or time stolen by the hypervisor)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def background_cores(seconds: float = 2.0) -> float:
    """Cores busy on average over the next ``seconds`` (call it while nothing of ours runs)."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def run_wrk(
    base_url: str,
    path: str,
    bodies: Path,
    script: Path,
    *,
    connections: int,
    seconds: float,
    rows_per_request: int,
    server_pgid: int | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """POST the bodies (one per line) to ``base_url + path`` for ``seconds`` through
    ``connections`` keep-alive connections of one wrk thread."""
    cmd = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout:.0f}s",
        "-s",
        str(script),
        base_url,
        "--",
        str(bodies),
        path,
    ]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = group_cpu_seconds(server_pgid) if server_pgid else 0.0
    machine_before = machine_busy_seconds()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout + 60)
    machine_after = machine_busy_seconds()
    server_after = group_cpu_seconds(server_pgid) if server_pgid else 0.0
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith(WRK_PREFIX)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix(WRK_PREFIX))
    kinds = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    wrk_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    return LoadResult(
        connections=connections,
        rows_per_request=rows_per_request,
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=sum(kinds.values()),
        error_kinds=kinds,
        p50=raw["p50_us"] / 1e6,
        p90=raw["p90_us"] / 1e6,
        p99=raw["p99_us"] / 1e6,
        max=raw["max_us"] / 1e6,
        mean=raw["mean_us"] / 1e6,
        wrk_cpu=wrk_cpu,
        server_cpu=server_after - server_before,
        machine_cpu=machine_after - machine_before,
    )

"""Where a server's time goes: ``py-spy`` samples it while ``wrk`` drives it.

``benchmarks/serving.py --profile DIR`` uses this after gyre's measured cells: one more run
of the one-row, concurrency-64 load (not counted in the tables, since sampling slows the
server a little) with ``py-spy record --subprocesses`` attached to the server's leader
process, so every uvicorn worker is sampled. It writes the collapsed stacks (``*.raw.txt``,
one ``frame;frame;... count`` line per stack: feed them to any flame-graph tool) and a
summary (``*.txt``): the functions holding the most samples by themselves (self) and with
what they call (inclusive), as shares of all samples. Only samples of threads holding the
GIL are taken (``--gil``): that is the Python work a worker can do one at a time, and it
leaves out threads waiting on locks, queues or sockets. Work in C that holds the GIL (uvloop
running its callbacks, httptools parsing, orjson) is charged to the Python frame that
called it; ``Runner.run`` as a leaf is the event loop itself. ``--nonblocking`` keeps
py-spy from pausing the server at each sample.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _common import BenchError

__all__ = ["COMPONENTS", "component", "py_spy", "record", "summarize"]

# Which part of a request a sample belongs to: the first rule that matches wins. A rule
# matches a sample when one of its markers is in any frame of the stack ("leaf:" markers:
# only in the innermost frame). Heuristic, but it sorts a gyre profile into the parts one
# would change separately; frames of other servers mostly land in the last rules.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prediction log", ("log_prediction", "gyre/predictions/")),
    ("access log (one JSON line per request)", ("logging/__init__", "gyre/serving/_logging")),
    ("scikit-learn predict", ("sklearn/",)),
    (
        "request decode (JSON, tensor, schema)",
        (
            "decode_request",
            "_decode",
            "_parse",
            "loads (gyre/serving/_json",
            "models/_signature",
            "Request.body",
            "Request.stream",
            "prepare (gyre",
        ),
    ),
    ("response encode", ("encode_outputs", "dumps (gyre/serving/_json", "_json_response")),
    (
        "batching (queue, futures, thread hand-off)",
        (
            "gyre/serving/_batcher",
            "gyre/serving/_slots",
            "concurrent/futures",
            "asyncio/futures",
            "asyncio/locks",
            "asyncio/mixins",
            "anyio/",
        ),
    ),
    ("socket writes", ("leaf:RequestResponseCycle.send", "leaf:_HoldingTransport.flush")),
    ("gyre front (ids, limits, metrics)", ("gyre/serving/_front", "gyre/serving/_telemetry")),
    ("gyre routes", ("gyre/serving/",)),
    ("starlette routing", ("starlette/",)),
    ("uvicorn HTTP (httptools protocol)", ("uvicorn/protocols", "uvicorn/middleware")),
    ("event loop (uvloop)", ("leaf:Runner.run",)),
)


def component(frames: list[str]) -> str:
    """The part of the request ``frames`` (outermost first) belong to; see COMPONENTS."""
    leaf = frames[-1] if frames else ""
    for name, markers in COMPONENTS:
        for marker in markers:
            if marker.startswith("leaf:"):
                if marker[5:] in leaf:
                    return name
            elif any(marker in frame for frame in frames):
                return name
    return "other"


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter or on the PATH, if any."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(exe: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[str]:
    """Start sampling ``pid`` and its children for ``seconds``; the caller waits."""
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--gil",  # only samples holding the GIL: the Python work, not threads waiting
        "--nonblocking",  # do not pause the server at each sample
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], out: Path, timeout: float) -> None:
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        log, _ = proc.communicate()
    if not out.exists():
        raise BenchError(f"py-spy wrote no profile (exit {proc.returncode}):\n{log[-1500:]}")


def _frame_name(frame: str) -> str:
    """``handle (gyre/serving/_app.py:120)`` -> ``handle (gyre/serving/_app.py)``: one name
    per function, whatever line was running."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarize(raw: Path, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # the first frames name the process and thread; the last is where it was
        total += count
        self_time[frames[-1]] += count
        parts[component(frames)] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples of threads holding the GIL", "", "by part of the request:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in parts.most_common()]
    lines += ["", "self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"

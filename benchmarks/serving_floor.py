"""What the least a model server can do costs, against the bare-ASGI ceiling.

    python benchmarks/serving_floor.py [--workers 1,2] [--loads 1x64,64x8] [--turns 6]
                                       [--seconds 3] [--write-docs]

``serving.py`` holds gyre to half the echo app's req/s (one-row requests at concurrency
64, LogisticRegression). This measures how far under the echo a Python model server falls
before it has done anything but answer: *the floor*, the app below, served as ``gyre serve``
serves its own (``serving_echo.serve_like_gyre``). For each OIP v2 request it reads the
body, parses it (orjson), makes the tensor an array, queues it with the other requests of
the event loop's turn for one prediction (a logistic regression's arithmetic in numpy, as
gyre's fast path does it), and answers OIP v2 JSON with an ``x-request-id`` and a model
version header. It checks nothing, counts nothing, limits nothing and logs nothing. Two
variants add what issue 4 also asks of every request, through gyre's own code: one JSON
access-log line (``gyre.serving._logging.AccessLogHandler``, as ``gyre serve`` writes
them), then the prediction log too (``gyre.predictions.PredictionLog`` as a ``gyre serve``
worker opens it, the requests of a loop turn appended as one group, as gyre's server does).

All of them run side by side with the echo app and ``gyre serve``, driven by the same
``wrk`` load in alternating turns (``serving_logcost.take_turns``); the table gives each
server's median req/s, its share of the echo's, and its CPU per request. The answers of the
floor are checked against the estimator before timing. Needs ``wrk``; Linux for several
workers. No peer: gyre against the ceiling.

The app is also what the servers run: ``python benchmarks/serving_floor.py serve --model
F.joblib [--access-log] [--spool DIR] [--port P] [--workers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gyre.predictions import PredictionGroup
from gyre.serving._front import new_request_id

HERE = Path(__file__).resolve().parent

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The app's settings, from the environment (``serve`` sets them; its workers inherit them).
MODEL_ENV = "GYRE_FLOOR_MODEL"  # a joblib file of a fitted binary LogisticRegression
ACCESS_ENV = "GYRE_FLOOR_ACCESS_LOG"  # "1": one JSON access line per request
SPOOL_ENV = "GYRE_FLOOR_SPOOL"  # a folder: log every prediction there
MODEL_NAME, VERSION = "floor", 1

_READY = [(b"content-type", b"application/json"), (b"content-length", b"2")]


class Floor:
    """One worker's state: the model's coefficients, its queue of requests waiting for the
    turn's prediction, and what it logs to."""

    def __init__(self) -> None:
        import joblib

        estimator = joblib.load(os.environ[MODEL_ENV])
        self.coef = np.ascontiguousarray(estimator.coef_[0], dtype=np.float64)
        self.intercept = float(estimator.intercept_[0])
        self.classes = np.asarray(estimator.classes_)
        self.columns = [str(i) for i in range(self.coef.shape[0])]
        self.queued: list[tuple[np.ndarray[Any, Any], asyncio.Future[Any]]] = []
        self.access: Any = None
        if os.environ.get(ACCESS_ENV) == "1":
            from gyre.serving._logging import AccessLogHandler

            self.access = AccessLogHandler()  # standard error, as gyre serve's lines
        self.log: Any = None
        self.answered: list[tuple[str, int, float, Any, Any]] = []
        if os.environ.get(SPOOL_ENV):
            from gyre.serving._entry import _open_log

            spool = Path(os.environ[SPOOL_ENV])
            self.log = _open_log(str(spool / "spool"), str(spool / "artifacts"), {})

    def close(self) -> None:
        if self.access is not None:
            self.access.close()
        if self.log is not None:
            self.log.close()

    def predict(self) -> None:
        """The turn's requests in one prediction, each answered with its rows."""
        queued, self.queued = self.queued, []
        x = queued[0][0] if len(queued) == 1 else np.concatenate([x for x, _ in queued])
        labels = self.classes.take((x @ self.coef + self.intercept > 0).astype(np.intp))
        start = 0
        for part, future in queued:
            end = start + part.shape[0]
            if not future.done():
                future.set_result(labels[start:end])
            start = end

    def note(self, request_id: str, latency_ms: float, x: Any, labels: Any) -> None:
        """Keep an answered request for the turn's log group."""
        self.answered.append((request_id, time.time_ns() // 1_000_000, latency_ms, x, labels))
        if len(self.answered) == 1:
            asyncio.get_running_loop().call_soon(self.log_turn)

    def log_turn(self) -> None:
        done, self.answered = self.answered, []
        rows = [item[3].shape[0] for item in done]
        self.log.append([PredictionGroup(
            [item[0] for item in done], [item[1] for item in done], MODEL_NAME, VERSION,
            np.concatenate([item[3] for item in done]),
            {"prediction": np.concatenate([item[4] for item in done])},
            [item[2] for item in done], "primary", self.columns,
            None if sum(rows) == len(rows) else rows,
        )])  # fmt: skip


_floor: Floor | None = None


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """The floor, a raw ASGI 3 application (see the module's docstring)."""
    global _floor
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _floor = Floor()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _floor is not None:
                    _floor.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    floor = _floor
    assert floor is not None  # (lifespan on: started before any request)
    started = time.perf_counter()
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": _READY})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    future = asyncio.get_running_loop().create_future()
    floor.queued.append((x, future))
    if len(floor.queued) == 1:
        asyncio.get_running_loop().call_soon(floor.predict)
    labels = await future
    request_id = new_request_id()
    answer = orjson.dumps({
        "model_name": MODEL_NAME, "model_version": str(VERSION),
        "id": request.get("id", request_id),
        "outputs": [{"name": "predict", "shape": [labels.shape[0], 1],
                     "datatype": "INT64", "data": labels.tolist()}],
    })  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer)),
        (b"x-request-id", request_id.encode()), (b"x-gyre-model-version", b"1"),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": answer})
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    if floor.log is not None:
        floor.note(request_id, latency_ms, x, labels)
    if floor.access is not None:
        path = scope["path"]
        floor.access.write_fields(f"POST {path} 200", {
            "request_id": request_id, "method": "POST", "path": path, "status": 200,
            "latency_ms": latency_ms, "model": MODEL_NAME, "version": str(VERSION),
            "rows": int(labels.shape[0]), "client": (scope.get("client") or ("", 0))[0],
        })  # fmt: skip


# -- the servers and the measurement ------------------------------------------------------------


def serve(argv: list[str]) -> None:
    from serving_echo import listen_options, serve_like_gyre

    parser = argparse.ArgumentParser(description="serve the floor app")
    listen_options(parser)
    parser.add_argument("--model", required=True, help="joblib file of a LogisticRegression")
    parser.add_argument("--access-log", action="store_true", help="a JSON line per request")
    parser.add_argument("--spool", help="log every prediction in this folder")
    args = parser.parse_args(argv)
    os.environ[MODEL_ENV] = args.model
    os.environ[ACCESS_ENV] = "1" if args.access_log else ""
    os.environ[SPOOL_ENV] = args.spool or ""
    serve_like_gyre("serving_floor:app", args.host, args.port, args.workers)


def floor_server(model: Path, workers: int, extra: list[str], cwd: Path) -> Any:
    from _common import free_port
    from serving_peers import ServerSpec

    port = free_port()
    cmd = [sys.executable, str(HERE / "serving_floor.py"), "serve", "--model", str(model),
           "--port", str(port), "--workers", str(workers), *extra]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    return ServerSpec("floor", cmd, f"{base}/v2/health/ready", base, cwd,
                      env={"PYTHONPATH": str(HERE)})  # fmt: skip


DOCS_START = "<!-- serving-floor:start (written by benchmarks/serving_floor.py --write-docs) -->"
DOCS_END = "<!-- serving-floor:end -->"
HEADERS = ("workers", "load", "server", "req/s (median)", "of the echo's", "server CPU/req",
           "req/s of each turn")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return 0
    import joblib
    from _common import machine_info, replace_section
    from serving import DOCS, Requests, fit, make_data, markdown, print_grid
    from serving_load import oip_v2
    from serving_logcost import parse_loads, take_turns
    from serving_peers import echo_server, gyre_server

    import gyre.models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1", help="worker counts, comma-separated (1,2)")
    parser.add_argument("--loads", default="1x64,64x8", help="ROWSxCONNECTIONS, comma-separated")
    parser.add_argument("--turns", type=int, default=6, help="turns of each server (default 6)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds a turn (default 3)")
    docs = DOCS.relative_to(DOCS.parent.parent)
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the table in {docs}")
    args = parser.parse_args(argv)
    loads = parse_loads(args.loads)
    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise SystemExit(f"--workers: {args.workers!r} is not a list of counts, e.g. 1,2") from None
    X, y = make_data()
    estimator = fit("logreg", X, y)
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="gyre-bench-floor-") as tmp:
        work = Path(tmp)
        model = work / "logreg.joblib"
        joblib.dump(estimator, model)
        package = work / "models" / "logreg"  # gyre serves it under the folder's name
        gyre.models.save_model(estimator, package, input_example=X[:5])
        requests = Requests.from_data(X, work / "bodies")
        protocol = oip_v2("logreg")

        def check(spec: Any) -> None:
            if spec.tool != "bare ASGI":  # (the echo answers the same whatever it is sent)
                requests.check(spec.base_url, protocol, estimator)

        for w in worker_counts:
            run = work / f"{w}-workers"
            specs = [
                ("bare ASGI (echo)", echo_server(w, run)),
                ("floor", floor_server(model, w, [], run)),
                ("floor + access log", floor_server(model, w, ["--access-log"], run)),
                ("floor + access log + prediction log",
                 floor_server(model, w, ["--access-log", "--spool", str(run / "spool")], run)),
                ("gyre --no-log", gyre_server(package, "logreg", w, log=False, home=run / "h0")),
                ("gyre", gyre_server(package, "logreg", w, log=True, home=run / "h1")),
            ]  # fmt: skip
            with contextlib.ExitStack() as stack:
                found = take_turns(stack, specs, loads, requests, protocol, run, check=check,
                                   turns=args.turns, seconds=args.seconds)  # fmt: skip
            rows += result_rows(w, [label for label, _ in specs], loads, found)
    print_grid(f"the floor: LogisticRegression, OIP v2, {args.turns} turns of "
               f"{args.seconds:g} s each, alternating", HEADERS, rows)  # fmt: skip
    if args.write_docs:
        m = machine_info()
        command = "python benchmarks/serving_floor.py " + " ".join(argv)
        lines = [
            f"Command: `{command.strip()}`",
            "",
            f"- date: {m['date']}; {args.turns} turns of {args.seconds:g} s per server and "
            "load, in alternating order",
            f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, "
            f"{m['platform']}; Python {m['python']}",
            "",
            markdown(HEADERS, rows),
        ]
        replace_section(DOCS, DOCS_START, DOCS_END, "\n".join(lines))
        print(f"results written to {DOCS}")
    return 0


def result_rows(
    workers: int, labels: list[str], loads: list[tuple[int, int]], found: Any
) -> list[tuple[str, ...]]:
    """A row per load and server: the median of its turns, as a share of the echo's."""
    rows = []
    for load in loads:
        ceiling = statistics.median(r.rps for r in found[(labels[0], load)])
        for label in labels:
            turns = found[(label, load)]
            rate = statistics.median(r.rps for r in turns)
            cpu = statistics.median(r.server_cpu / r.requests for r in turns) * 1e6
            rows.append((str(workers), f"{load[0]} row(s), c={load[1]}", label, f"{rate:,.0f}",
                         f"{rate / ceiling:.0%}", f"{cpu:.0f} µs",
                         " ".join(f"{r.rps:,.0f}" for r in turns)))  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())

"""What the prediction log costs a `gyre serve` server, and what a change did to it.

    python benchmarks/serving_logcost.py [--model logreg] [--workers 1] [--loads 1x64,64x8]
                                         [--turns 8] [--seconds 3] [--also SRC_DIR ...]

The logging target of `serving.py` reads the log's cost from five half-cell turns per
server in a run that lasts half an hour. A change to the log moves that cost by a point or
two, which is less than one run differs from the next; this measures it directly: one
`gyre serve --no-log` server and one that logs, started side by side on the same model,
driven by turns in alternating order (wrk, OIP v2 requests), the cost read from the
medians of their turns. ``--also DIR`` adds a logging server running the gyre source tree
in DIR (``PYTHONPATH=DIR``: a `git worktree` or `git archive REV src | tar -x` of another
revision, its ``src`` folder), so a change is measured against the code before it in the
same run. Loads are ``ROWSxCONNECTIONS``. Needs `wrk`. No peer: gyre against itself.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import server
from serving import MODELS, THREAD_VARS, Requests, fit, make_data
from serving_load import WRK_LUA, LoadResult, Protocol, oip_v2, run_wrk
from serving_peers import ServerSpec, gyre_server

Turns = dict[tuple[str, tuple[int, int]], list[LoadResult]]  # (server, load) -> its turns


@dataclass
class Variant:
    label: str
    log: bool
    source: Path | None = None  # another gyre source tree (PYTHONPATH), None: this one
    turns: dict[tuple[int, int], list[tuple[float, float]]] = field(default_factory=dict)


def take_turns(
    stack: contextlib.ExitStack,
    specs: Sequence[tuple[str, ServerSpec]],
    loads: Sequence[tuple[int, int]],
    requests: Requests,
    protocol: Protocol,
    work: Path,
    *,
    turns: int,
    seconds: float,
    check: Callable[[ServerSpec], object] | None = None,
) -> Turns:
    """Start every server of ``specs`` (label, spec) in ``stack``, one thread per native
    library each (``check(spec)`` once it is up: raise if it answers wrongly), then drive
    them with each load in turns: a one-second warm-up each, then ``turns`` turns of
    ``seconds`` each, every other round in reverse order, so that none is always measured
    first or after the same neighbour."""
    script = work / "load.lua"
    script.write_text(WRK_LUA)
    running = []
    for i, (label, spec) in enumerate(specs):
        env = {**spec.env, **{var: "1" for var in THREAD_VARS}}
        started = server(spec.cmd, spec.ready_url, cwd=spec.cwd, log=work / f"serve-{i}.log",
                         env=env, ready_timeout=spec.ready_timeout)  # fmt: skip
        running.append((label, spec, stack.enter_context(started)))
        if check is not None:
            check(spec)
    results: Turns = {}
    for rows, connections in loads:
        bodies = requests.bodies("oip", protocol, rows)
        load = {"connections": connections, "rows_per_request": rows}
        for _, spec, _ in running:  # warm-up
            run_wrk(spec.base_url, protocol.path, bodies, script, seconds=1, **load)
        for turn in range(turns):
            for label, spec, proc in running if turn % 2 == 0 else running[::-1]:
                r = run_wrk(spec.base_url, protocol.path, bodies, script, seconds=seconds,
                            server_pgid=proc.pid, **load)  # fmt: skip
                results.setdefault((label, (rows, connections)), []).append(r)
    return results


def parse_loads(text: str) -> list[tuple[int, int]]:
    loads = []
    for part in text.split(","):
        rows, _, connections = part.strip().partition("x")
        if not rows.isdigit() or not connections.isdigit():
            raise SystemExit(f"--loads: {part!r} is not ROWSxCONNECTIONS, e.g. 1x64")
        loads.append((int(rows), int(connections)))
    return loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="logreg")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--loads", default="1x64,64x8", help="ROWSxCONNECTIONS, comma-separated")
    parser.add_argument("--turns", type=int, default=8, help="turns of each server (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds a turn (default 3)")
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="SRC_DIR",
        help="also a logging server running the gyre source tree in SRC_DIR",
    )
    args = parser.parse_args(argv)
    loads = parse_loads(args.loads)
    for source in args.also:
        if not (source / "gyre" / "__init__.py").is_file():
            raise SystemExit(f"--also {source}: no gyre package there (give its src folder)")
    variants = [Variant("gyre --no-log", False), Variant("gyre", True)]
    variants += [Variant(f"gyre from {s}", True, s.resolve()) for s in args.also]
    import gyre.models

    X, y = make_data()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-logcost-") as tmp:
        work = Path(tmp)
        package = work / "models" / args.model  # served under the folder's name
        gyre.models.save_model(fit(args.model, X, y), package, input_example=X[:5])
        requests = Requests.from_data(X, work / "bodies")
        protocol = oip_v2(args.model)
        with contextlib.ExitStack() as stack:
            specs = []
            for i, v in enumerate(variants):
                spec = gyre_server(package, args.model, args.workers, log=v.log,
                                   home=work / f"home-{i}")  # fmt: skip
                if v.source is not None:
                    spec.env["PYTHONPATH"] = str(v.source)
                specs.append((v.label, spec))
            found = take_turns(stack, specs, loads, requests, protocol, work,
                               turns=args.turns, seconds=args.seconds)  # fmt: skip
        for v in variants:
            for load in loads:
                v.turns[load] = [
                    (r.rows_per_second, r.server_cpu / r.requests) for r in found[(v.label, load)]
                ]
    print_results(variants, loads, args)
    return 0


def print_results(
    variants: list[Variant], loads: list[tuple[int, int]], args: argparse.Namespace
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"the prediction log's cost: {args.model}, {args.workers} worker(s), "
        f"OIP v2, {args.turns} turns of {args.seconds:g} s each, alternating",
        show_lines=True,
    )
    for header in ("load", "server", "rows/s (median)", "cost vs --no-log", "server CPU/req",
                   "rows/s of each turn"):  # fmt: skip
        table.add_column(header, justify="right" if header != "server" else "left")
    for load in loads:
        base = statistics.median(rate for rate, _ in variants[0].turns[load])
        for v in variants:
            rates = [rate for rate, _ in v.turns[load]]
            rate = statistics.median(rates)
            cpu = statistics.median(c for _, c in v.turns[load]) * 1e6
            cost = "" if not v.log else f"{100 * (1 - rate / base):+.1f}%"
            table.add_row(f"{load[0]} row(s), c={load[1]}", v.label, f"{rate:,.0f}", cost,
                          f"{cpu:.0f} µs", " ".join(f"{x:,.0f}" for x in rates))  # fmt: skip
    Console(width=max(140, Console().width)).print(table)


if __name__ == "__main__":
    sys.exit(main())

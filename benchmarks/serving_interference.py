"""What work on the *other* core costs a `gyre serve` worker on this machine.

    python benchmarks/serving_interference.py [--turns 5] [--seconds 4]

The logging target of `serving.py` compares a server that logs with one that does not.
The log's writer thread and its compactor process mostly run on the core the worker does
not use, so on a machine whose cores were independent they would cost a one-worker server
almost nothing. This measures whether they are: one `gyre serve --no-log` worker pinned to
CPU 0 (`taskset`), `wrk` pinned to CPU 1, one-row LogisticRegression requests at
concurrency 64, by turns with and without a Python busy loop at nice 19 on CPU 1 (it only
takes the cycles `wrk` leaves there, and touches almost no memory). A loss with the busy
loop running is interference between the cores (hyperthreads of one physical core, or the
host), which any logging or compaction work on the second core also causes. Linux only
(`taskset`, `os.sched_setaffinity`); needs `wrk`. No peer: gyre against itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BenchError, free_port, server
from serving import N_FEATURES, Requests, fit, make_data
from serving_load import WRK_LUA, oip_v2, run_wrk
from serving_peers import gyre_cli

BUSY_LOOP = "import os\nos.nice(19)\nx = 0\nwhile True:\n    x += 1\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=5, help="turns of each (default 5)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds a turn (default 4)")
    args = parser.parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        raise BenchError("needs Linux and at least two CPUs")
    import gyre.models

    X, y = make_data()
    assert X.shape[1] == N_FEATURES
    with tempfile.TemporaryDirectory(prefix="gyre-bench-interference-") as tmp:
        work = Path(tmp)
        package = work / "logreg"
        gyre.models.save_model(fit("logreg", X, y), package, input_example=X[:5])
        protocol = oip_v2("logreg")
        bodies = Requests.from_data(X, work / "bodies").bodies("oip", protocol, 1)
        script = work / "load.lua"
        script.write_text(WRK_LUA)
        port = free_port()
        cmd = ["taskset", "-c", "0", *gyre_cli(), "serve", str(package), "--host",
               "127.0.0.1", "--port", str(port), "--no-log"]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        os.sched_setaffinity(0, {1})  # wrk (a child of this process) runs on CPU 1
        env = {"GYRE_HOME": str(work / "home"), "OMP_NUM_THREADS": "1"}
        quiet: list[float] = []
        busy: list[float] = []
        with server(cmd, f"{url}/v2/models/logreg/ready", cwd=work, log=work / "serve.log",
                    env=env):  # fmt: skip
            load = {"connections": 64, "rows_per_request": 1}
            run_wrk(url, protocol.path, bodies, script, seconds=2, **load)  # warm-up
            for _ in range(args.turns):
                r = run_wrk(url, protocol.path, bodies, script, seconds=args.seconds, **load)
                quiet.append(r.requests / r.seconds)
                loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                try:
                    r = run_wrk(url, protocol.path, bodies, script, seconds=args.seconds, **load)
                    busy.append(r.requests / r.seconds)
                finally:
                    loop.kill()
                    loop.wait()
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="gyre serve, 1 worker on CPU 0: one-row req/s at c=64 (wrk on CPU 1)",
        show_lines=True,
    )
    for header in ("turn", "CPU 1: wrk only", "CPU 1: wrk + nice-19 busy loop", "lost"):
        table.add_column(header, justify="right")
    for i, (q, b) in enumerate(zip(quiet, busy, strict=True), 1):
        table.add_row(str(i), f"{q:,.0f}", f"{b:,.0f}", f"{100 * (1 - b / q):.1f}%")
    # (the machine's speed drifts between turns: the loss is taken within each turn)
    lost = statistics.median(1 - b / q for q, b in zip(quiet, busy, strict=True))
    table.add_row("median", f"{statistics.median(quiet):,.0f}",
                  f"{statistics.median(busy):,.0f}", f"[bold]{100 * lost:.1f}%[/]")  # fmt: skip
    Console(width=max(100, Console().width)).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The metadata-store contract: what every MetadataStore must do, as plain checks.

Run them all with :func:`check_store`, or one by one (``STORE_CHECKS``) to see which fails.
Each check makes its own uniquely named experiment, so a shared database is fine.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

from gyre.entities import Dataset, Metric, RunStatus
from gyre.errors import Conflict, InvalidArgument, InvalidFilter, NotFound
from gyre.store import MetadataStore

__all__ = ["STORE_CHECKS", "check_store"]


def _expect(exc_type: type[BaseException], fn: Callable[[], object], *needles: str) -> None:
    try:
        fn()
    except exc_type as exc:
        text = str(exc)
        for needle in needles:
            assert needle in text, f"{exc_type.__name__} message {text!r} should name {needle!r}"
        return
    raise AssertionError(f"expected {exc_type.__name__}")


def _experiment(store: MetadataStore, prefix: str) -> str:
    return store.create_experiment(f"{prefix}-{uuid.uuid4().hex[:10]}").experiment_id


def check_experiments(store: MetadataStore) -> None:
    name = f"exp-{uuid.uuid4().hex[:10]}"
    exp = store.create_experiment(name, tags={"team": "risk"})
    assert exp.name == name and exp.tags == {"team": "risk"}
    assert store.get_experiment(exp.experiment_id) == exp
    assert store.get_experiment_by_name(name) == exp
    assert store.get_experiment_by_name(name + "-missing") is None
    assert name in [e.name for e in store.search_experiments()]
    _expect(Conflict, lambda: store.create_experiment(name), name)
    _expect(NotFound, lambda: store.get_experiment("987654321"), "987654321")
    _expect(InvalidArgument, lambda: store.create_experiment(""))


def check_runs(store: MetadataStore) -> None:
    exp = _experiment(store, "runs")
    parent = store.create_run(exp, name="parent", tags={"stage": "dev"}, start_time=1000)
    assert parent.status is RunStatus.RUNNING and parent.name == "parent"
    assert parent.tags == {"stage": "dev"} and parent.start_time == 1000
    child = store.create_run(exp, name="child", parent_run_id=parent.run_id)
    assert store.get_run(child.run_id).parent_run_id == parent.run_id
    unnamed = store.create_run(exp)
    assert unnamed.name, "a run without a name gets one"
    _expect(NotFound, lambda: store.get_run("0" * 32), "0" * 32)
    _expect(NotFound, lambda: store.create_run(exp, parent_run_id="f" * 32), "f" * 32)
    _expect(NotFound, lambda: store.create_run("987654321"), "987654321")

    done = store.update_run(child.run_id, status=RunStatus.FINISHED, end_time=5000)
    assert done.status is RunStatus.FINISHED and done.end_time == 5000
    failed = store.update_run(unnamed.run_id, status=RunStatus.FAILED, error="ValueError: boom")
    assert failed.status is RunStatus.FAILED and failed.error == "ValueError: boom"
    assert failed.end_time is not None
    killed = store.update_run(parent.run_id, status=RunStatus.KILLED)
    assert killed.status is RunStatus.KILLED
    _expect(NotFound, lambda: store.update_run("1" * 32, status=RunStatus.FINISHED), "1" * 32)

    # A client that retries creation with the id it chose gets the same run back.
    chosen = uuid.uuid4().hex
    first = store.create_run(exp, name="retry", run_id=chosen)
    again = store.create_run(exp, name="retry", run_id=chosen)
    assert first.run_id == again.run_id == chosen


def check_log_batch(store: MetadataStore) -> None:
    exp = _experiment(store, "batch")
    run = store.create_run(exp).run_id
    points = [Metric("loss", 1.0 / (i + 1), i, 100 + i) for i in range(50)]
    store.log_batch(run, metrics=points, params={"lr": "0.1"}, tags={"note": "a"})
    history = store.get_metric_history(run, "loss")
    assert history == points, "history returns every point, ordered by step"
    got = store.get_run(run)
    assert got.params == {"lr": "0.1"} and got.tags["note"] == "a"
    assert got.metrics["loss"] == points[-1].value, "latest value is the highest step"

    # Non-finite values are stored faithfully.
    odd = [
        Metric("odd", math.nan, 0, 1),
        Metric("odd", math.inf, 1, 2),
        Metric("odd", -math.inf, 2, 3),
    ]
    store.log_batch(run, metrics=odd)
    values = [m.value for m in store.get_metric_history(run, "odd")]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    store.log_batch(run, metrics=[Metric("nan_last", math.nan, 0, 1)])
    assert math.isnan(store.get_run(run).metrics["nan_last"])

    # Latest value: highest step wins, then latest timestamp; an older step never overwrites.
    store.log_batch(run, metrics=[Metric("acc", 0.9, 10, 1)])
    store.log_batch(run, metrics=[Metric("acc", 0.1, 3, 99)])
    assert store.get_run(run).metrics["acc"] == 0.9

    # Params are write-once; tags are overwritten.
    store.log_batch(run, params={"lr": "0.1"})
    _expect(Conflict, lambda: store.log_batch(run, params={"lr": "0.2"}), "lr", "0.1", "0.2")
    store.log_batch(run, tags={"note": "b"})
    assert store.get_run(run).tags["note"] == "b"

    # All or nothing: a batch with a conflicting param writes none of its metrics.
    _expect(
        Conflict,
        lambda: store.log_batch(run, metrics=[Metric("never", 1.0, 0, 1)], params={"lr": "9"}),
    )
    assert store.get_metric_history(run, "never") == []

    # A batch id makes a retried batch harmless.
    batch = [Metric("retry", float(i), i, i) for i in range(5)]
    bid = uuid.uuid4().hex
    store.log_batch(run, metrics=batch, batch_id=bid)
    store.log_batch(run, metrics=batch, batch_id=bid)
    assert len(store.get_metric_history(run, "retry")) == 5

    _expect(NotFound, lambda: store.log_batch("2" * 32, metrics=points[:1]), "2" * 32)
    _expect(NotFound, lambda: store.get_metric_history("3" * 32, "loss"), "3" * 32)
    _expect(
        InvalidArgument,
        lambda: store.log_batch(run, metrics=[Metric("bad", "x", 0, 0)]),  # type: ignore[arg-type]
        "bad",
    )
    _expect(InvalidArgument, lambda: store.log_batch(run, params={"": "x"}))


def check_search(store: MetadataStore) -> None:
    exp = _experiment(store, "search")
    other = _experiment(store, "search-other")
    ids = {}
    for i, (model, rmse, team) in enumerate(
        [
            ("rf", 0.2, "x"),
            ("rf", 0.35, "x"),
            ("gbm", 0.25, "y"),
            ("rf", 0.1, "y"),
            ("lr", 0.5, "x"),
        ]
    ):
        run = store.create_run(exp, name=f"run-{i}", start_time=1000 + i)
        store.log_batch(
            run.run_id,
            metrics=[Metric("rmse", rmse, 0, 1)],
            params={"model": model},
            tags={"team": team},
        )
        ids[i] = run.run_id
    no_metric = store.create_run(exp, name="no-metric", start_time=999).run_id
    store.create_run(other, name="elsewhere")

    def names(flt: str, order: tuple[str, ...] = ()) -> list[str]:
        return [r.name for r in store.search_runs([exp], filter=flt, order_by=order).items]

    assert names("metrics.rmse < 0.3 and params.model = 'rf' and tags.team = 'x'") == ["run-0"]
    assert names("metrics.rmse < 0.3", ("metrics.rmse ASC",)) == ["run-3", "run-0", "run-2"]
    assert names("", ("metrics.rmse DESC",))[-1] == "no-metric", "missing values sort last"
    assert names("params.model = 'gbm' or tags.team = 'y'", ("start_time",)) == [
        "run-2",
        "run-3",
    ]
    assert names("params.model IN ('lr', 'gbm')", ("start_time",)) == ["run-2", "run-4"]
    assert names("name LIKE 'run-%' and metrics.rmse >= 0.35", ("start_time",)) == [
        "run-1",
        "run-4",
    ]
    assert names("status = 'RUNNING'") and not names("status = 'FINISHED'")
    assert len(names("")) == 6 and "elsewhere" not in names("")
    assert names(f"run_id = '{no_metric}'") == ["no-metric"]

    # Paging visits every run exactly once.
    seen: list[str] = []
    token = None
    while True:
        page = store.search_runs([exp], max_results=2, page_token=token)
        seen += [r.run_id for r in page.items]
        token = page.next_page_token
        if token is None:
            break
    assert sorted(seen) == sorted([*ids.values(), no_metric])

    _expect(InvalidFilter, lambda: store.search_runs([exp], filter="metrics.rmse ~ 1"), "~")
    _expect(InvalidFilter, lambda: store.search_runs([exp], filter="metrics.rmse < 'a'"), "'a'")
    _expect(InvalidFilter, lambda: store.search_runs([exp], filter="bogus = 1"), "bogus")
    _expect(InvalidArgument, lambda: store.search_runs([exp], max_results=0), "0")
    _expect(InvalidArgument, lambda: store.search_runs([exp], page_token="nope"), "nope")


def check_datasets(store: MetadataStore) -> None:
    exp = _experiment(store, "datasets")
    run = store.create_run(exp).run_id
    schema = [{"name": "age", "type": "int64"}, {"name": "city", "type": "object"}]
    train = Dataset("customers", "a" * 64, 100, schema, "memory", "dataframe")
    store.log_inputs(run, train, "train")
    store.log_inputs(run, train, "train")  # idempotent
    store.log_inputs(run, Dataset("customers", "b" * 64, 20, schema, "memory", "dataframe"), "eval")
    inputs = store.get_run(run).inputs
    assert [(i.dataset.digest[0], i.context) for i in inputs] == [("a", "train"), ("b", "eval")]
    assert inputs[0].dataset == train
    _expect(NotFound, lambda: store.log_inputs("4" * 32, train, "train"), "4" * 32)


STORE_CHECKS: dict[str, Callable[[MetadataStore], None]] = {
    "experiments": check_experiments,
    "runs": check_runs,
    "log_batch": check_log_batch,
    "search": check_search,
    "datasets": check_datasets,
}


def check_store(store: MetadataStore) -> None:
    """Run every contract check against ``store``; AssertionError says which failed."""
    for name, check in STORE_CHECKS.items():
        try:
            check(store)
        except AssertionError as exc:
            raise AssertionError(f"store contract {name!r} failed: {exc}") from exc

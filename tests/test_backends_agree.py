"""A stateful property test: SQLite and PostgreSQL stores, fed the same operations, agree."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gyre.entities import Metric, RunStatus
from gyre.errors import Conflict
from gyre.store._sql import SqlStore

KEYS = st.sampled_from(["loss", "acc", "rmse", "lr.decay"])
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(10**6), max_value=10**6).map(float),
)
FILTERS = [
    "",
    "metrics.loss < 0.5",
    "metrics.acc >= 0 and params.model = 'rf'",
    "params.model IN ('rf', 'gbm') or tags.team = 'x'",
    "status = 'FINISHED'",
    "tags.team LIKE 'x%'",
]


@pytest.mark.postgres
def test_sqlite_and_postgres_agree(sqlite_uri: str, pg_uri: str) -> None:
    a, b = SqlStore(sqlite_uri), SqlStore(pg_uri)

    class Agree(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[str] = []
            self.exp = ""

        @initialize()
        def experiment(self) -> None:
            name = f"agree-{uuid.uuid4().hex[:8]}"
            ea, eb = a.create_experiment(name), b.create_experiment(name)
            self.exp_a, self.exp_b = ea.experiment_id, eb.experiment_id

        @rule(start=st.integers(0, 10**6))
        def create_run(self, start: int) -> None:
            run_id = uuid.uuid4().hex
            a.create_run(self.exp_a, name=run_id[:6], start_time=start, run_id=run_id)
            b.create_run(self.exp_b, name=run_id[:6], start_time=start, run_id=run_id)
            self.runs.append(run_id)

        @precondition(lambda self: self.runs)
        @rule(
            data=st.data(),
            points=st.lists(
                st.tuples(KEYS, VALUES, st.integers(0, 5), st.integers(0, 3)), max_size=8
            ),
            model=st.sampled_from(["rf", "gbm", "lr", None]),
            team=st.sampled_from(["x", "xy", "y", None]),
        )
        def log(
            self,
            data: st.DataObject,
            points: list[tuple[str, float, int, int]],
            model: str | None,
            team: str | None,
        ) -> None:
            run_id = data.draw(st.sampled_from(self.runs))
            metrics = [Metric(k, v, s, t) for k, v, s, t in points]
            params = {"model": model} if model else None
            tags = {"team": team} if team else None
            outcomes = []
            for store in (a, b):
                try:
                    store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
                    outcomes.append("ok")
                except Conflict:
                    outcomes.append("conflict")
            assert outcomes[0] == outcomes[1]

        @precondition(lambda self: self.runs)
        @rule(data=st.data(), status=st.sampled_from(list(RunStatus)))
        def end(self, data: st.DataObject, status: RunStatus) -> None:
            run_id = data.draw(st.sampled_from(self.runs))
            a.update_run(run_id, status=status, end_time=1)
            b.update_run(run_id, status=status, end_time=1)

        @invariant()
        def runs_agree(self) -> None:
            for run_id in self.runs:
                ra, rb = a.get_run(run_id), b.get_run(run_id)
                assert (ra.params, ra.tags, ra.status) == (rb.params, rb.tags, rb.status)
                assert ra.metrics.keys() == rb.metrics.keys()
                for key, va in ra.metrics.items():
                    vb = rb.metrics[key]
                    assert va == vb or (math.isnan(va) and math.isnan(vb)), (key, va, vb)

        @invariant()
        def searches_agree(self) -> None:
            for flt in FILTERS:
                for order in ((), ("metrics.loss DESC",), ("params.model",)):
                    ids_a = [
                        r.run_id
                        for r in a.search_runs([self.exp_a], filter=flt, order_by=order).items
                    ]
                    ids_b = [
                        r.run_id
                        for r in b.search_runs([self.exp_b], filter=flt, order_by=order).items
                    ]
                    assert ids_a == ids_b, (flt, order)

    Agree.TestCase.settings = settings(
        max_examples=10,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    try:
        Agree.TestCase().runTest()
    finally:
        a.close()
        b.close()

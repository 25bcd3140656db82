"""Triggers: cron schedules, monitor alerts and manual calls start pipelines, one per model.

Time is passed to ``tick(now=...)`` and ``fire_trigger(now=...)``: nothing sleeps to wait
for a cron time. Pipelines come from ``tests.fixtures.pipelines_for_triggers``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.loop import (
    TriggerScheduler,
    TriggerSpec,
    apply_trigger,
    fire_trigger,
    load_trigger_specs,
)
from gyre.store._sql import SqlStore
from gyre.store._sql_base import now_ms
from tests.fixtures import pipelines_for_triggers as P

MODULE = "tests.fixtures.pipelines_for_triggers"


@pytest.fixture(autouse=True)
def _fresh_pipelines() -> Iterator[None]:
    P.reset()
    yield
    P.RELEASE.set()  # never leave a blocking step waiting


def _apply(store: SqlStore, name: str, pipeline: str, model: str = "churn", **more: object):  # type: ignore[no-untyped-def]
    raw = {"name": name, "model": model, "pipeline": f"{MODULE}:{pipeline}", **more}
    return apply_trigger(store, TriggerSpec.from_dict(raw))


def _first_at_hour(store: SqlStore, name: str, hour: int) -> datetime:
    """The first ``hour``:00 UTC after the trigger was created (the same day when it was
    created before that hour): the first time a daily schedule at that hour is due."""
    created = datetime.fromtimestamp(store.get_trigger(name).created_time / 1000, UTC)
    first = created.replace(hour=hour, minute=0, second=0, microsecond=0)
    return first if first > created else first + timedelta(days=1)


def _audit(store: SqlStore, model: str, action: str) -> list[dict[str, object]]:
    return [
        {"reason": e.reason, **e.details}
        for e in reversed(store.get_audit_log(model))
        if e.action == action
    ]


# -- declaring triggers -------------------------------------------------------------------


def test_spec_errors_name_the_offending_value(sqlite_store: SqlStore) -> None:
    base = {"name": "t", "model": "churn", "pipeline": f"{MODULE}:retrain"}
    with pytest.raises(InvalidArgument, match="'every monday'"):
        TriggerSpec.from_dict({**base, "schedule": "every monday"})
    with pytest.raises(InvalidArgument, match=r"\['cron'\]"):
        TriggerSpec.from_dict({**base, "cron": "0 3 * * *"})
    with pytest.raises(InvalidArgument, match="'retrain'"):
        TriggerSpec.from_dict({**base, "pipeline": "retrain"})
    with pytest.raises(InvalidArgument, match="'model'"):
        TriggerSpec.from_dict({"name": "t", "pipeline": f"{MODULE}:retrain"})
    cases = {
        "nowhere.at_all:retrain": "'nowhere.at_all:retrain'",
        f"{MODULE}:missing": "'missing'",
        f"{MODULE}:not_a_pipeline": "not a gyre.Pipeline",
    }
    for target, needle in cases.items():
        with pytest.raises(InvalidArgument, match=needle):
            apply_trigger(sqlite_store, TriggerSpec.from_dict({**base, "pipeline": target}))
    with pytest.raises(InvalidArgument, match="no parameter 'depth'"):
        _apply(sqlite_store, "t", "retrain", params={"depth": 3})
    with pytest.raises(InvalidArgument, match="needs parameter 'n'"):
        _apply(sqlite_store, "t", "plain")
    with pytest.raises(NotFound, match="'churn-health'"):
        _apply(sqlite_store, "t", "retrain", on_alert="churn-health")
    assert sqlite_store.list_triggers() == [], "nothing invalid was stored"


def test_a_yaml_file_holds_one_trigger_or_several() -> None:
    one = TriggerSpec.from_yaml(
        f"name: nightly\nmodel: churn\npipeline: {MODULE}:retrain\nschedule: '0 3 * * *'\n"
    )
    assert one.schedule == "0 3 * * *" and one.params == {} and one.enabled
    several = load_trigger_specs(
        "triggers:\n"
        f"  - {{name: a, model: churn, pipeline: '{MODULE}:retrain', params: {{n: 2}}}}\n"
        f"  - {{name: b, model: fraud, pipeline: '{MODULE}:plain', on_alert: fraud-health}}\n"
    )
    assert [(s.name, s.params, s.on_alert) for s in several] == [
        ("a", {"n": 2}, None),
        ("b", {}, "fraud-health"),
    ]
    with pytest.raises(InvalidArgument, match="'a'"):
        load_trigger_specs(f"- {{name: a, model: m, pipeline: '{MODULE}:retrain'}}\n" * 2)


# -- firing -------------------------------------------------------------------------------


def test_a_manual_fire_runs_the_pipeline_tells_it_why_and_audits_it(
    sqlite_store: SqlStore,
) -> None:
    _apply(sqlite_store, "retrain-churn", "retrain", params={"n": 4})
    run = fire_trigger(sqlite_store, "retrain-churn", "labels for March arrived", actor="ana")
    assert run.ok and run.cause == "manual" and run.run_id
    assert P.SEEN == [{"n": 4, "reason": "labels for March arrived"}]
    tags = sqlite_store.get_run(run.run_id).tags
    assert tags["gyre.trigger.name"] == "retrain-churn"
    assert tags["gyre.trigger.cause"] == "manual"
    assert tags["gyre.trigger.reason"] == "labels for March arrived"
    trigger = sqlite_store.get_trigger("retrain-churn")
    assert not trigger.running and trigger.last_status == "FINISHED"
    assert trigger.last_run_id == run.run_id
    [fired] = _audit(sqlite_store, "churn", "trigger.fire")
    assert fired["reason"] == "labels for March arrived" and fired["cause"] == "manual"
    assert fired["trigger"] == "retrain-churn" and fired["params"] == {"n": 4}
    [finished] = _audit(sqlite_store, "churn", "trigger.finish")
    assert finished["status"] == "FINISHED" and finished["run_id"] == run.run_id

    _apply(sqlite_store, "count-churn", "plain", params={"n": 7})
    assert fire_trigger(sqlite_store, "count-churn").ok
    assert P.SEEN[-1] == {"n": 7}, "a pipeline without trigger_reason is not told"
    with pytest.raises(NotFound, match="'nope'"):
        fire_trigger(sqlite_store, "nope")


def test_a_failing_pipeline_records_failed_and_releases_the_lock(sqlite_store: SqlStore) -> None:
    _apply(sqlite_store, "doomed", "failing", params={"n": 3})
    _apply(sqlite_store, "sibling", "retrain")
    run = fire_trigger(sqlite_store, "doomed", "try it")
    assert run.status == "FAILED" and "boom: training data for n=3 is missing" in run.message
    trigger = sqlite_store.get_trigger("doomed")
    assert trigger.last_status == "FAILED" and "boom" in trigger.last_message
    assert not trigger.running and trigger.last_run_id == run.run_id
    [finished] = _audit(sqlite_store, "churn", "trigger.finish")
    assert finished["status"] == "FAILED"
    assert fire_trigger(sqlite_store, "sibling").ok, "the model's lock was released"


def test_a_pipeline_that_no_longer_loads_fails_the_firing(sqlite_store: SqlStore) -> None:
    sqlite_store.put_trigger("gone", "churn", f"{MODULE}:vanished")
    run = fire_trigger(sqlite_store, "gone")
    assert run.status == "FAILED" and "'vanished'" in run.message
    assert not sqlite_store.get_trigger("gone").running


def test_cron_triggers_fire_when_their_time_comes_and_once_per_time(
    sqlite_store: SqlStore,
) -> None:
    _apply(sqlite_store, "nightly", "retrain", schedule="0 3 * * *", params={"n": 1})
    scheduler = TriggerScheduler(sqlite_store)
    three = _first_at_hour(sqlite_store, "nightly", 3)
    assert scheduler.tick(three - timedelta(minutes=1)) == []
    [run] = scheduler.tick(three + timedelta(seconds=2))
    assert run.cause == "schedule" and run.ok
    assert "'0 3 * * *'" in run.reason and three.isoformat() in run.reason
    assert P.SEEN[-1]["reason"] == run.reason, "the pipeline is told which schedule"
    assert scheduler.tick(three + timedelta(minutes=30)) == [], "once per cron time"
    assert scheduler.tick(three + timedelta(hours=23, minutes=59)) == []
    [next_day] = scheduler.tick(three + timedelta(days=1, seconds=1))
    assert next_day.details["scheduled_time"] == (three + timedelta(days=1)).isoformat()
    [caught_up] = scheduler.tick(three + timedelta(days=5))
    assert caught_up.ok, "missed times (the server was down) fire once, not four times"
    assert scheduler.tick(three + timedelta(days=5, minutes=1)) == []
    fired = _audit(sqlite_store, "churn", "trigger.fire")
    assert [f["cause"] for f in fired] == ["schedule"] * 3
    assert fired[0]["schedule"] == "0 3 * * *"

    sqlite_store.put_trigger(
        "nightly", "churn", f"{MODULE}:retrain", schedule="0 3 * * *", enabled=False
    )
    assert scheduler.tick(three + timedelta(days=9)) == [], "a disabled trigger stays quiet"


def test_alert_triggers_fire_once_per_new_batch_of_alerts(sqlite_store: SqlStore) -> None:
    store = sqlite_store
    store.put_monitor("churn-health", "churn", {})
    store.raise_alert("churn-health", "data_drift", "critical", "old news", "fp:old")
    _apply(store, "on-drift", "retrain", on_alert="churn-health", params={"n": 2})
    scheduler = TriggerScheduler(store)
    assert scheduler.tick() == [], "alerts from before the trigger existed do not fire it"

    first = store.raise_alert("churn-health", "data_drift", "critical", "4 of 9 drifted", "fp:d")
    second = store.raise_alert("churn-health", "accuracy", "warning", "accuracy 0.71", "fp:a")
    assert first is not None and second is not None
    [run] = scheduler.tick()
    assert run.cause == "alert" and run.ok
    assert f"alert {second.alert_id}" in run.reason and "and 1 more" in run.reason
    assert run.details["alert_ids"] == [second.alert_id, first.alert_id]
    assert P.SEEN[-1]["reason"] == run.reason
    assert scheduler.tick() == [], "that batch fired it already"

    third = store.raise_alert("churn-health", "data_drift", "critical", "still drifting", "fp:x")
    assert third is not None
    [again] = scheduler.tick()
    assert again.details["alert_ids"] == [third.alert_id]
    fired = _audit(store, "churn", "trigger.fire")
    assert [f["alert_ids"] for f in fired] == [
        [second.alert_id, first.alert_id],
        [third.alert_id],
    ]
    assert fired[0]["monitor"] == "churn-health"
    assert fired[0]["incident_ids"] == sorted({first.incident_id, second.incident_id})
    assert store.get_trigger("on-drift").last_alert_id == third.alert_id


def test_one_run_per_model_a_manual_fire_is_refused_a_due_one_waits(
    sqlite_store: SqlStore,
) -> None:
    store = sqlite_store
    _apply(store, "slow", "blocking")
    _apply(store, "hourly", "retrain", schedule="0 * * * *", params={"n": 5})
    _apply(store, "other-model", "retrain", model="fraud", schedule="0 * * * *")
    noon = _first_at_hour(store, "slow", 12)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(fire_trigger(store, "slow", "by hand", noon)), daemon=True
    )
    worker.start()
    assert P.STARTED.wait(30), "the blocking pipeline never started"
    assert store.get_trigger("slow").running

    with pytest.raises(Conflict, match="model 'churn' is busy: trigger 'slow'"):
        fire_trigger(store, "hourly", "me too", noon + timedelta(seconds=1))
    scheduler = TriggerScheduler(store)
    runs = scheduler.tick(noon + timedelta(minutes=1))
    assert [r.trigger for r in runs] == ["other-model"], "another model is not held up"
    assert not store.get_trigger("hourly").running and P.SEEN[-1]["n"] == 1

    P.RELEASE.set()
    worker.join(30)
    assert len(outcome) == 1 and getattr(outcome[0], "ok", False)
    [waited] = scheduler.tick(noon + timedelta(minutes=2))
    assert waited.trigger == "hourly" and waited.ok, "it stayed due and ran once free"
    assert P.SEEN[-1] == {"n": 5, "reason": waited.reason}


def test_a_stale_lease_is_taken_back(sqlite_store: SqlStore) -> None:
    store = sqlite_store
    _apply(store, "crashed", "retrain")
    _apply(store, "next", "retrain", params={"n": 9})
    start = now_ms()
    assert store.claim_trigger("crashed", start, "dead-host:1:abc", 60_000)  # then it "died"
    at = datetime.fromtimestamp(start / 1000, UTC)
    with pytest.raises(Conflict, match="'dead-host:1:abc'"):
        fire_trigger(store, "next", "", at + timedelta(seconds=30))
    run = fire_trigger(store, "next", "after the crash", at + timedelta(seconds=61))
    assert run.ok and P.SEEN[-1]["n"] == 9
    lost = store.get_trigger("crashed")
    assert lost.last_status == "EXPIRED" and "dead-host:1:abc" in lost.last_message
    assert not lost.running
    assert not store.finish_trigger("crashed", "dead-host:1:abc", start + 90_000, "FINISHED")


def test_a_long_run_renews_its_lease(sqlite_store: SqlStore) -> None:
    store = sqlite_store
    _apply(store, "slow", "blocking")
    _apply(store, "sibling", "retrain")
    at = datetime.now(UTC)
    worker = threading.Thread(
        target=fire_trigger,
        args=(store, "slow", "", at),
        kwargs={"lease": timedelta(seconds=0.3)},
        daemon=True,
    )
    worker.start()
    assert P.STARTED.wait(30)
    first = store.get_trigger("slow").lease_until
    assert first is not None
    deadline = time.monotonic() + 30
    while store.get_trigger("slow").lease_until == first:
        assert time.monotonic() < deadline, "the lease was never renewed"
        time.sleep(0.02)  # polling a condition with a deadline
    renewed = store.get_trigger("slow").lease_until
    assert renewed is not None and renewed > first
    assert not store.claim_trigger("sibling", renewed - 1, "h", 1000), "still held"
    P.RELEASE.set()
    worker.join(30)
    assert store.get_trigger("slow").last_status == "FINISHED"


def test_fire_through_a_gyre_server(http_store: object, live_server: object) -> None:
    from gyre.store._http import HttpStore

    assert isinstance(http_store, HttpStore)
    _apply_http = TriggerSpec.from_dict(
        {"name": "remote", "model": "churn", "pipeline": f"{MODULE}:retrain", "params": {"n": 6}}
    )
    apply_trigger(http_store, _apply_http)
    run = fire_trigger(http_store, "remote", "from a laptop", actor="bo")
    assert run.ok and P.SEEN[-1] == {"n": 6, "reason": "from a laptop"}
    assert http_store.get_trigger("remote").last_status == "FINISHED"
    entries = http_store.get_audit_log("churn")
    assert [e.action for e in entries] == ["trigger.finish", "trigger.fire"]
    assert entries[1].actor == "bo"


# -- gyre server ----------------------------------------------------------------------------


def test_gyre_server_fires_alert_triggers_in_the_background(tmp_path: Path) -> None:
    import httpx

    from gyre.artifacts import open_artifact_store
    from gyre.server import create_app
    from tests.fixtures.server import ServerThread

    uri = f"sqlite:///{tmp_path / 'gyre.db'}"
    store = SqlStore(uri)
    store.put_monitor("churn-health", "churn", {})
    _apply(store, "on-drift", "blocking", on_alert="churn-health")
    app = create_app(
        SqlStore(uri),
        open_artifact_store(str(tmp_path / "artifacts")),
        auth=False,
        triggers=True,
        trigger_poll_s=0.05,
    )
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        store.raise_alert("churn-health", "data_drift", "critical", "drifted", "fp:drift")
        assert P.STARTED.wait(60), "the server never fired the trigger"
        assert client.get("/healthz").status_code == 200, "responsive while the pipeline runs"
        listed = client.get("/api/v1/triggers", params={"model": "churn"}).json()["triggers"]
        assert [(t["name"], t["running_since"] is not None) for t in listed] == [("on-drift", True)]
        P.RELEASE.set()
        deadline = time.monotonic() + 60
        while store.get_trigger("on-drift").last_status != "FINISHED":
            assert time.monotonic() < deadline, "the fired pipeline never finished"
            time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
    fired = _audit(store, "churn", "trigger.fire")
    assert len(fired) == 1 and fired[0]["cause"] == "alert"
    assert "'churn-health'" in str(fired[0]["reason"])
    store.close()


# -- gyre triggers ... ----------------------------------------------------------------------


def test_triggers_cli_apply_list_fire_delete(
    tmp_path: Path, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import assert_one_line_error, gyre_cli

    monkeypatch.setenv("GYRE_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent.parent))
    spec = tmp_path / "triggers.yaml"
    spec.write_text(
        "triggers:\n"
        f"  - {{name: nightly, model: churn, pipeline: '{MODULE}:retrain',"
        " schedule: '0 3 * * *', params: {n: 3}}\n"
        f"  - {{name: weekly, model: churn, pipeline: '{MODULE}:retrain'}}\n"
    )
    applied = gyre_cli("triggers", "apply", str(spec), check=True)
    assert "nightly" in applied.stdout and "0 3 * * *" in applied.stdout
    listed = json.loads(gyre_cli("triggers", "list", "--json", check=True).stdout)
    assert [(t["name"], t["schedule"]) for t in listed] == [
        ("nightly", "0 3 * * *"),
        ("weekly", None),
    ]
    assert "nightly" in gyre_cli("triggers", "list", check=True).stdout

    fired = gyre_cli("triggers", "fire", "nightly", "--reason", "new labels", "--json", check=True)
    run = json.loads(fired.stdout)
    assert run["status"] == "FINISHED" and run["reason"] == "new labels"

    store = SqlStore(sqlite_uri)
    assert store.claim_trigger("weekly", now_ms(), "someone-else", 3_600_000)
    assert_one_line_error(
        gyre_cli("triggers", "fire", "nightly"), "busy", "'weekly'", "'someone-else'"
    )
    assert_one_line_error(gyre_cli("triggers", "delete", "weekly"), "'weekly'", "running")
    store.finish_trigger("weekly", "someone-else", now_ms(), "FINISHED")
    store.close()
    assert "deleted" in gyre_cli("triggers", "delete", "weekly", check=True).stdout
    assert_one_line_error(gyre_cli("triggers", "fire", "weekly"), "'weekly'")

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\nmodel: churn\npipeline: '{MODULE}:retrain'\nschedule: daily\n")
    assert_one_line_error(gyre_cli("triggers", "apply", str(bad)), "'daily'")
    bad.write_text(f"name: x\nmodel: churn\npipeline: '{MODULE}:nope'\n")
    assert_one_line_error(gyre_cli("triggers", "apply", str(bad)), "'nope'")

    doomed = tmp_path / "doomed.yaml"
    doomed.write_text(f"name: doomed\nmodel: fraud\npipeline: '{MODULE}:failing'\n")
    gyre_cli("triggers", "apply", str(doomed), check=True)
    failed = gyre_cli("triggers", "fire", "doomed")
    assert failed.returncode == 1 and "boom" in failed.stderr

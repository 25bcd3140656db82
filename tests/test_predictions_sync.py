"""Edge sync: a local prediction log copied into a central store, idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyre.artifacts import ArtifactStore, open_artifact_store
from gyre.artifacts._http import HttpArtifactStore
from gyre.errors import BackendUnavailable, InvalidArgument, Unauthorized
from gyre.predictions import PredictionLog, SyncReport, query, sync
from tests.fixtures.predictions import BASE_MS, FailingStore, records
from tests.fixtures.server import LiveServer, ServerFactory, free_port

DAY_MS = 86_400_000


def _rows(store: ArtifactStore, model: str) -> list[tuple[str, int, object]]:
    table = query(store, model)
    return [(r["request_id"], r["version"], r["label"]) for r in table.to_pylist()]


@pytest.fixture
def local(tmp_path: Path) -> ArtifactStore:
    """An edge's store: two models, two versions, three days, labels."""
    store = open_artifact_store(str(tmp_path / "edge"))
    with PredictionLog(tmp_path / "spool", store) as log:
        log.append(records(30, version=1, step_ms=DAY_MS // 10))  # three days
        log.compact()
        log.append(records(10, version=2, prefix="v2", start_ms=BASE_MS + DAY_MS))
        log.append(records(5, model="fraud", version=7, prefix="f"))
        log.append_feedback("churn", [("req-1", 1), ("v2-3", 0), ("nobody", 1)], BASE_MS + 5)
        log.compact()
        log.append_feedback("churn", [("req-1", 0)], BASE_MS + 2 * DAY_MS)
    return store


def test_sync_copies_everything_once(local: ArtifactStore, tmp_path: Path) -> None:
    central = open_artifact_store(str(tmp_path / "central"))
    report = sync(local, central)
    assert report.models == ("churn", "fraud")
    assert report.entries > 0 and report.blobs > 0 and report.bytes > 0
    for model in ("churn", "fraud"):
        assert _rows(central, model) == _rows(local, model)
    assert sync(local, central) == SyncReport(0, 0, 0, 0, ("churn", "fraud")), "nothing twice"


def test_sync_interrupted_anywhere_and_retried_neither_duplicates_nor_loses(
    local: ArtifactStore, tmp_path: Path
) -> None:
    expected = {model: _rows(local, model) for model in ("churn", "fraud")}
    total_blobs = sync(local, open_artifact_store(str(tmp_path / "probe"))).blobs
    central = open_artifact_store(str(tmp_path / "central"))
    attempts = 0
    for k in range(total_blobs + 1):  # the link drops after k more uploads, every time
        attempts += 1
        try:
            sync(local, FailingStore(central, blobs_left=1))
            break
        except BackendUnavailable as exc:
            assert repr(central.uri) in str(exc)
        for model, rows in expected.items():  # whatever arrived is whole, and only once
            got = [(rid, version) for rid, version, _ in _rows(central, model)]
            assert len(got) == len(set(got)), k
            assert set(got) <= {(rid, version) for rid, version, _ in rows}, k
    assert attempts > 3, "the interruptions did happen"
    for model, rows in expected.items():
        assert _rows(central, model) == rows


def test_sync_interrupted_between_blobs_and_manifest_is_finished_by_the_next(
    local: ArtifactStore, tmp_path: Path
) -> None:
    central = open_artifact_store(str(tmp_path / "central"))
    for appends in range(3):
        with pytest.raises(BackendUnavailable):
            sync(local, FailingStore(central, appends_left=appends))
    sync(local, central)
    assert _rows(central, "churn") == _rows(local, "churn")


def test_sync_to_a_gyre_server(local: ArtifactStore, live_server: LiveServer) -> None:
    with HttpArtifactStore(live_server.url, retry_seconds=5.0) as central:
        sync(local, central)
        assert _rows(central, "churn") == _rows(local, "churn")
        assert sync(local, central).entries == 0


def test_unreachable_central_raises_naming_it_and_leaves_local_intact(
    local: ArtifactStore, tmp_path: Path
) -> None:
    before = _rows(local, "churn")
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "edge").rglob("*"))
    url = f"http://127.0.0.1:{free_port()}"
    with (
        HttpArtifactStore(url, retry_seconds=0.2) as central,
        pytest.raises(BackendUnavailable, match=url) as caught,
    ):
        sync(local, central)
    assert "the next sync copies what this one did not" in str(caught.value)
    assert _rows(local, "churn") == before
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "edge").rglob("*")) == files


def test_sync_of_predictions_only_and_bad_prefixes(local: ArtifactStore, tmp_path: Path) -> None:
    central = open_artifact_store(str(tmp_path / "central"))
    sync(local, central, scopes_prefix="predictions/")
    assert {label for _, _, label in _rows(central, "churn")} == {None}, "no labels copied"
    with pytest.raises(InvalidArgument, match="'runs/'"):
        sync(local, central, scopes_prefix="runs/")


def test_edges_merge_into_one_central_store(tmp_path: Path) -> None:
    central = open_artifact_store(str(tmp_path / "central"))
    for edge in ("a", "b"):
        store = open_artifact_store(str(tmp_path / edge))
        with PredictionLog(tmp_path / f"spool-{edge}", store) as log:
            log.append(records(4, prefix=edge))
        sync(store, central)
    ids = query(central, "churn").column("request_id").to_pylist()
    assert sorted(ids) == sorted(f"{e}-{i}" for e in "ab" for i in range(4))


def test_a_sync_with_nothing_to_copy_still_reaches_central(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A sync that reports success has reached central: an empty edge store against an
    unreachable central, or one that refuses the token, fails (it used to report 0 entries
    copied, as if all were well, until the first compaction)."""
    empty = open_artifact_store(str(tmp_path / "empty"))
    url = f"http://127.0.0.1:{free_port()}"
    with HttpArtifactStore(url, retry_seconds=0.2) as down, pytest.raises(BackendUnavailable):
        sync(empty, down)
    guarded = server_factory(auth=True)
    with (
        HttpArtifactStore(guarded.url, token="not-a-token", retry_seconds=1.0) as central,
        pytest.raises(Unauthorized) as refused,
    ):
        sync(empty, central)
    assert repr(guarded.url) in refused.value.message
    assert refused.value.hint is not None and "GYRE_TOKEN" in refused.value.hint
    assert "'write' scope" in refused.value.hint

"""Deploying versions into a running prediction server: canary, shadow, hot reload on alias
moves (and rollback, and a version that fails to load), and which version answered."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

import gyre
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.models import Model, load_model, save_model
from gyre.registry import Registry
from gyre.serving import Limits, ServedModel, _listen, create_app, resolve_model
from gyre.serving._slots import Challenger, digest_version, in_canary, log_version
from tests.test_serving_app import FakeLog, lifespan, serving
from tests.test_serving_batch import _cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def tracking() -> Iterator[str]:
    """The SDK logs to this test's own GYRE_HOME (it remembers the store otherwise)."""
    from gyre import config

    uri = config.get("GYRE_TRACKING_URI")
    gyre.set_tracking_uri(uri)
    yield uri
    gyre.set_tracking_uri(None)


class Scaled:
    """A python-flavor model: ``x * factor``. ``config``: ``factor`` ("broken": loading
    fails), ``fail`` (every predict but the input example's fails), ``block`` (a predict
    of x == 13 waits for :attr:`RELEASE`), ``burn`` (CPU seconds every predict spends)."""

    config: ClassVar[dict[str, Any]] = {"factor": 1.0}
    RELEASE: ClassVar[threading.Event] = threading.Event()

    def load_context(self, context: Any) -> None:
        if context.config.get("factor") == "broken":
            raise RuntimeError("this version cannot be loaded")
        self.factor = float(context.config.get("factor", 1.0))
        self.fail = bool(context.config.get("fail", False))
        self.block = bool(context.config.get("block", False))
        self.burn = float(context.config.get("burn", 0.0))

    def predict(self, context: Any, model_input: Any) -> Any:
        x = model_input["x"].to_numpy()
        started = time.thread_time()
        while time.thread_time() - started < self.burn:
            pass
        if self.block and (x == 13).any():
            Scaled.RELEASE.wait(timeout=30)
        if self.fail and not (x == 1.0).all():
            raise ValueError("this shadow always fails")
        return x * self.factor


EXAMPLE = pd.DataFrame({"x": [1.0]})


def scaled(factor: Any, **config: Any) -> Scaled:
    model = Scaled()
    model.config = {"factor": factor, **config}  # type: ignore[misc]
    return model


def load_scaled(path: Path, factor: Any, **config: Any) -> Model:
    save_model(scaled(factor, **config), path, input_example=EXAMPLE)
    return load_model(path)


def register(factor: Any) -> int:
    """A new version of registered model ``svc`` that multiplies by ``factor``."""
    with gyre.start_run(experiment="svc"):
        info = gyre.log_model(scaled(factor), input_example=EXAMPLE)
    return gyre.register_model(info.uri, "svc").version


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # poll interval, not synchronisation


def sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- canary ------------------------------------------------------------------------------


async def test_canary_takes_its_share_by_request_id_and_says_which_version_answered(
    tmp_path: Path,
) -> None:
    v1, v2 = load_scaled(tmp_path / "v1", 1.0), load_scaled(tmp_path / "v2", 2.0)
    log = FakeLog()
    canary = Challenger(ServedModel("svc", "2", v2), "canary", 20)
    ids = [f"req-{i}" for i in range(300)]
    async with serving(
        [ServedModel("svc", "1", v1)], challengers=[canary], prediction_log=log
    ) as client:
        answers = [
            await client.post("/predict/svc", json=[{"x": 5.0}], headers={"X-Request-ID": rid})
            for rid in ids
        ]
        infer = await client.post(
            "/v2/models/svc/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [5.0]}]},
            headers={"X-Request-ID": "req-7"},
        )
        again = await client.post(
            "/predict/svc", json=[{"x": 5.0}], headers={"X-Request-ID": "req-7"}
        )
        pinned = await client.post("/predict/svc/versions/2", json=[{"x": 1.0}])
        metadata = (await client.get("/v2/models/svc")).json()
        metrics = (await client.get("/metrics")).text

    expected = {rid: "2" if in_canary(rid, 20) else "1" for rid in ids}
    got = {rid: a.headers["x-gyre-model-version"] for rid, a in zip(ids, answers, strict=True)}
    assert got == expected, "the hash of the request id decides, for every request"
    share = sum(v == "2" for v in got.values()) / len(ids)
    assert 0.12 < share < 0.28
    for a in answers:  # the body agrees with the header, and the answer is that version's
        body = a.json()
        assert body["version"] == a.headers["x-gyre-model-version"]
        assert body["predictions"] == [5.0 * int(body["version"])]
    # The same request id always lands on the same version, on either protocol.
    assert infer.json()["model_version"] == again.json()["version"] == expected["req-7"]
    assert pinned.json()["predictions"] == [2.0] and pinned.headers["x-gyre-model-version"] == "2"

    canaries = sum(v == "2" for v in expected.values())
    series = 'gyre_serving_variant_requests_total{{model="svc",variant="{}",version="{}"}}'
    seven_canary = expected["req-7"] == "2"
    assert sample(metrics, series.format("canary", "2")) == canaries + seven_canary * 2 + 1
    primaries = len(ids) - canaries + (not seven_canary) * 2
    assert sample(metrics, series.format("primary", "1")) == primaries
    logged = {r.request_id: (r.version, r.variant) for r in log.records[: len(ids)]}
    assert logged == {
        rid: (int(v), "canary" if v == "2" else "primary") for rid, v in expected.items()
    }
    assert metadata["versions"] == ["1", "2"]
    assert metadata["parameters"]["serving"]["challenger"] == {
        "version": "2", "mode": "canary", "percent": 20, "active": True,
    }  # fmt: skip


def test_canary_share_is_validated() -> None:
    with pytest.raises(InvalidArgument, match="150"):
        Challenger(ServedModel("svc", "2", object()), "canary", 150)  # type: ignore[arg-type]


# -- shadow ------------------------------------------------------------------------------


async def test_shadow_answers_are_logged_never_returned_nor_waited_for(tmp_path: Path) -> None:
    primary = load_scaled(tmp_path / "v1", 1.0)
    slow = load_scaled(tmp_path / "v2", 3.0, block=True)
    log = FakeLog()
    Scaled.RELEASE.clear()
    shadow = Challenger(ServedModel("svc", "2", slow), "shadow")
    try:
        async with serving(
            [ServedModel("svc", "1", primary)], challengers=[shadow], prediction_log=log
        ) as client:
            # The shadow is stuck on x == 13; the primary answers all the same.
            for i in range(3):
                answer = await client.post(
                    "/predict/svc", json=[{"x": 13.0}], headers={"X-Request-ID": f"s{i}"}
                )
                assert answer.status_code == 200
                assert answer.json()["predictions"] == [13.0]
                assert answer.headers["x-gyre-model-version"] == "1"

            async def primaries_logged() -> bool:  # logged in the event loop's next turn
                return len(log.records) == 3

            await until(primaries_logged)
            assert [r.variant for r in log.records] == ["primary"] * 3
            Scaled.RELEASE.set()

            async def shadows_logged() -> bool:
                return sum(r.variant == "shadow" for r in log.records) == 3

            await until(shadows_logged)
            metrics = (await client.get("/metrics")).text
    finally:
        Scaled.RELEASE.set()
    mirrored = [r for r in log.records if r.variant == "shadow"]
    assert sorted(r.request_id for r in mirrored) == ["s0", "s1", "s2"]
    assert {(r.version, r.outputs["prediction"]) for r in mirrored} == {(2, 39.0)}
    assert sample(metrics, 'gyre_serving_shadow_total{model="svc",outcome="ok",version="2"}') == 3


async def _costly_shadow(
    tmp_path: Path, burn: float, share: float, requests: int, *, together: bool
) -> tuple[list[httpx.Response], float, float]:
    """``requests`` one-row predictions (one after the other, or all at once) to a cheap
    primary whose shadow spends ``burn`` CPU seconds a call, its budget ``share`` of a
    core; once every copy is counted: the answers, and the copies ``ok`` and ``dropped``."""
    primary = load_scaled(tmp_path / "v1", 1.0)
    costly = load_scaled(tmp_path / "v2", 2.0, burn=burn)
    shadow = Challenger(ServedModel("svc", "2", costly), "shadow")
    series = 'gyre_serving_shadow_total{{model="svc",outcome="{}",version="2"}}'
    async with serving(
        [ServedModel("svc", "1", primary)], challengers=[shadow], limits=Limits(shadow_cpu=share)
    ) as client:
        send = [client.post("/predict/svc", json=[{"x": 2.0}]) for _ in range(requests)]
        answers = list(await asyncio.gather(*send)) if together else [await s for s in send]

        async def all_counted() -> bool:
            text = (await client.get("/metrics")).text
            return sum(sample(text, series.format(o)) for o in ("ok", "dropped")) == requests

        await until(all_counted)
        text = (await client.get("/metrics")).text
    return answers, sample(text, series.format("ok")), sample(text, series.format("dropped"))


async def test_a_shadow_past_its_cpu_budget_gets_copies_dropped(tmp_path: Path) -> None:
    """A shadow costing far more CPU than the primary shares the worker's interpreter with
    it: past its budget (``shadow_cpu``, a share of one core) copies are dropped and counted
    as such, so it cannot take the CPU the answers need; every answer is still the
    primary's."""
    answers, ok, dropped = await _costly_shadow(tmp_path, 0.02, 0.01, 40, together=False)
    assert all(a.status_code == 200 and a.json()["predictions"] == [2.0] for a in answers)
    assert ok >= 1 and dropped >= 1, (ok, dropped)


async def test_a_burst_cannot_overdraw_a_shadows_cpu_budget(tmp_path: Path) -> None:
    """Requests arriving together while the shadow's first call still runs (its cost not
    yet counted): copies are admitted only as far as the budget covers what one call has
    been costing, not all of them at once."""
    answers, ok, dropped = await _costly_shadow(tmp_path, 0.05, 0.1, 30, together=True)
    assert all(a.status_code == 200 for a in answers)
    # 0.1 s of CPU to spend, 0.05 s a call: a few copies, not thirty
    assert 1 <= ok <= 4, (ok, dropped)


async def test_a_failing_or_slow_shadow_never_affects_the_primary(tmp_path: Path) -> None:
    primary = load_scaled(tmp_path / "v1", 1.0)
    broken = load_scaled(tmp_path / "v2", 2.0, fail=True)
    stuck = load_scaled(tmp_path / "v3", 3.0, block=True)
    for challenger, outcome in ((broken, "failed"), (stuck, "timeout")):
        log = FakeLog()
        Scaled.RELEASE.clear()
        try:
            async with serving(
                [ServedModel("svc", "1", primary)],
                challengers=[Challenger(ServedModel("svc", "9", challenger), "shadow")],
                prediction_log=log,
                limits=Limits(request_timeout_s=1.0),
            ) as client:
                answers = [await client.post("/predict/svc", json=[{"x": 13.0}]) for _ in range(3)]
                series = f'gyre_serving_shadow_total{{model="svc",outcome="{outcome}",version="9"}}'

                async def counted(series: str = series) -> bool:
                    return sample((await client.get("/metrics")).text, series) == 3

                await until(counted)
                Scaled.RELEASE.set()  # the stuck predict thread ends; the server can stop
        finally:
            Scaled.RELEASE.set()
        assert [a.status_code for a in answers] == [200] * 3, outcome
        assert all(a.json()["predictions"] == [13.0] for a in answers)
        assert [r.variant for r in log.records] == ["primary"] * 3, "nothing logged for it"


# -- hot reload ----------------------------------------------------------------------------


class _StoreBlip(Registry):
    """A registry whose artifact store cannot be reached while ``down`` is set."""

    down = False

    def download(self, uri: str) -> Path:
        if self.down:
            raise BackendUnavailable("S3 endpoint 'http://s3.test' is unreachable (test)")
        return super().download(uri)


async def test_an_alias_moved_while_the_store_is_down_is_followed_once_it_answers(
    tmp_path: Path,
) -> None:
    """A rollback made while the artifact store is down a moment: the version cannot be
    fetched, which says nothing of the version, so later checks try again and the server
    swaps once the store answers (it used to stay on the old version for good)."""
    one, two = register(1.0), register(2.0)
    registry = _StoreBlip()
    registry.set_alias("svc", "champion", two)
    spec = resolve_model("models:/svc@champion", registry=registry)
    async with serving([spec], registry=registry) as client:
        registry.down = True
        registry.set_alias("svc", "champion", one)
        [blip] = (await client.post("/admin/reload")).json()["svc"]["reload"]
        [again] = (await client.post("/admin/reload")).json()["svc"]["reload"]
        during = await client.post("/predict/svc", json=[{"x": 1.0}])
        registry.down = False
        [after] = (await client.post("/admin/reload")).json()["svc"]["reload"]
        answer = await client.post("/predict/svc", json=[{"x": 1.0}])
    registry.close()
    assert blip["failing"] and "could not be fetched now" in blip["error"]
    assert again["failing"] and again["serving_version"] == "2"
    assert during.headers["x-gyre-model-version"] == "2"
    assert after["failing"] is False and after["serving_version"] == str(one)
    assert answer.headers["x-gyre-model-version"] == str(one)


async def test_alias_moves_are_followed_without_a_failed_request(tmp_path: Path) -> None:
    one, two, broken = register(1.0), register(2.0), register("broken")
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    spec = resolve_model("models:/svc@champion", registry=registry)
    log = FakeLog()
    seen: list[tuple[int, str, float]] = []
    stop = asyncio.Event()
    app = create_app([spec], registry=registry, prediction_log=log)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client, lifespan(app):

        async def hammer() -> None:
            while not stop.is_set():
                a = await client.post("/predict/svc", json=[{"x": 3.0}])
                version = a.headers.get("x-gyre-model-version", "")
                seen.append((a.status_code, version, a.json().get("predictions", [0])[0]))

        async def answered_by(version: str) -> bool:
            return any(v == version for _, v, _ in seen[-5:])

        async def reload() -> dict[str, Any]:
            answer = await client.post("/admin/reload")
            assert answer.status_code == 200, answer.text
            return dict(answer.json()["svc"])

        clients = [asyncio.create_task(hammer()) for _ in range(4)]
        try:
            await until(lambda: answered_by("1"))
            registry.set_alias("svc", "champion", two)
            status = await reload()
            assert status["version"] == "2"
            await until(lambda: answered_by("2"))

            registry.set_alias("svc", "champion", broken)  # fails to load: keep v2
            status = await reload()
            [watch] = status["reload"]
            assert watch["failing"] and watch["serving_version"] == "2"
            assert watch["alias_version"] == str(broken)
            assert "cannot be loaded" in watch["error"]
            metadata = (await client.get("/v2/models/svc")).json()
            assert metadata["parameters"]["serving"]["reload"][0]["failing"] is True
            metrics = (await client.get("/metrics")).text
            failing = 'gyre_serving_reload_failing{alias="champion",model="svc"}'
            assert sample(metrics, failing) == 1.0
            assert sample(metrics, 'gyre_serving_reloads_total{alias="champion",'
                              'model="svc",outcome="failed"}') == 1.0  # fmt: skip
            count = len(seen)

            async def more_answers() -> bool:
                return len(seen) > count + 20

            await until(more_answers)
            assert {v for _, v, _ in seen[count:]} == {"2"}, "the old version serves on"

            registry.set_alias("svc", "champion", one)  # rollback: moving the alias back
            status = await reload()
            assert status["version"] == "1" and not status["reload"][0]["failing"]
            await until(lambda: answered_by("1"))
            assert sample((await client.get("/metrics")).text, failing) == 0.0
        finally:
            stop.set()
            await asyncio.gather(*clients)
    registry.close()
    assert seen and all(status == 200 for status, _, _ in seen), "no request failed"
    assert all(x == 3.0 * float(v) for _, v, x in seen), "each answer is its version's"
    versions = [v for _, v, _ in seen]
    assert {"1", "2"} <= set(versions) and str(broken) not in versions
    assert {r.version for r in log.records} == {1, 2}


async def test_polling_picks_up_an_alias_move(tmp_path: Path) -> None:
    one, two = register(1.0), register(2.0)
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    spec = resolve_model("models:/svc@champion", registry=registry)
    async with serving([spec], registry=registry, reload_interval=0.05) as client:
        first = await client.post("/predict/svc", json=[{"x": 1.0}])
        registry.set_alias("svc", "champion", two)

        async def moved() -> bool:
            a = await client.post("/predict/svc", json=[{"x": 1.0}])
            return a.headers["x-gyre-model-version"] == "2"

        await until(moved)
    registry.close()
    assert first.headers["x-gyre-model-version"] == "1"


async def test_a_worker_starting_after_the_alias_moved_serves_where_it_points_now(
    tmp_path: Path,
) -> None:
    """A worker started from the command's resolution of an alias (as uvicorn restarts one
    whose predecessor died) answers its first request with the version the alias points to
    now, not the one it pointed to when the server started; polling off."""
    one, two = register(1.0), register(2.0)
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    spec = resolve_model("models:/svc@champion", registry=registry)  # the command, at start
    registry.set_alias("svc", "champion", two)  # ... moved before this worker starts
    async with serving([spec], registry=registry) as client:
        first = await client.post("/predict/svc", json=[{"x": 1.0}])
        status = (await client.get("/admin/status")).json()
    registry.close()
    assert spec.version == "1"
    assert first.headers["x-gyre-model-version"] == "2"
    assert first.json()["predictions"] == [2.0]
    assert status["models"]["svc"]["version"] == "2"


class _SlowRegistry(Registry):
    """A registry whose alias lookups each wait until ``parties`` of them are under way
    (as lookups do against a registry that answers slowly): asked one after the other,
    the first waits past the server's start-up budget; asked together, all answer."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.slow = False
        self.together = threading.Barrier(parties, timeout=30)

    def resolve_version(self, ref: Any) -> Any:
        if self.slow:
            self.together.wait()
        return super().resolve_version(ref)


async def test_a_starting_worker_asks_for_all_its_aliases_at_once(tmp_path: Path) -> None:
    """A worker serving several aliases resolves them together within one start-up budget,
    not one budget each: with a slow registry every model still starts on the version its
    alias points to now."""
    one, two = register(1.0), register(2.0)
    registry = _SlowRegistry(parties=2)
    registry.set_alias("svc", "champion", one)
    registry.set_alias("svc", "gold", one)
    specs = [
        resolve_model("models:/svc@champion", name="a", registry=registry),
        resolve_model("models:/svc@gold", name="b", registry=registry),
    ]
    registry.set_alias("svc", "champion", two)  # both moved before this worker starts
    registry.set_alias("svc", "gold", two)
    registry.slow = True
    async with serving(specs, registry=registry) as client:
        a = await client.post("/predict/a", json=[{"x": 1.0}])
        b = await client.post("/predict/b", json=[{"x": 1.0}])
    registry.close()
    assert [s.version for s in specs] == ["1", "1"]
    assert a.headers["x-gyre-model-version"] == b.headers["x-gyre-model-version"] == "2"
    assert a.json()["predictions"] == b.json()["predictions"] == [2.0]


async def test_a_deleted_alias_is_reported_failing_and_serving_goes_on(tmp_path: Path) -> None:
    """An alias deleted under a server: it keeps serving its version, and the status and
    the reload_failing gauge say the alias cannot be followed, until it exists again."""
    one = register(1.0)
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    spec = resolve_model("models:/svc@champion", registry=registry)
    failing = 'gyre_serving_reload_failing{alias="champion",model="svc"}'
    async with serving([spec], registry=registry) as client:
        registry.store.delete_alias("svc", "champion")
        gone = (await client.post("/admin/reload")).json()["svc"]
        answer = await client.post("/predict/svc", json=[{"x": 1.0}])
        metrics_gone = (await client.get("/metrics")).text
        registry.set_alias("svc", "champion", one)
        back = (await client.post("/admin/reload")).json()["svc"]
        metrics_back = (await client.get("/metrics")).text
    registry.close()
    [watch] = gone["reload"]
    assert watch["failing"] is True and "cannot resolve 'models:/svc@champion'" in watch["error"]
    assert answer.status_code == 200 and answer.headers["x-gyre-model-version"] == "1"
    assert sample(metrics_gone, failing) == 1.0
    assert back["reload"][0]["failing"] is False and back["reload"][0]["error"] is None
    assert sample(metrics_back, failing) == 0.0


async def test_admin_reload_without_an_alias_is_404(tmp_path: Path) -> None:
    async with serving([ServedModel("svc", "1", load_scaled(tmp_path / "m", 1.0))]) as client:
        answer = await client.post("/admin/reload")
        status = (await client.get("/admin/status")).json()
    assert answer.status_code == 404 and "hot reload is off" in answer.json()["message"]
    assert status["models"]["svc"]["version"] == "1" and not status["reload"]["enabled"]


# -- versions of packages outside the registry -------------------------------------------


async def test_a_folder_is_versioned_by_its_digest_everywhere(tmp_path: Path) -> None:
    from gyre.models._bundle import write_bundle

    folder = tmp_path / "svc"
    save_model(scaled(1.0), folder, input_example=EXAMPLE)
    digest = hashlib.sha256((folder / "gyre-model.yaml").read_bytes()).hexdigest()
    spec = resolve_model(str(folder))
    assert spec.version == digest_version(digest) and spec.version.isdigit()
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert resolve_model(str(copy)).version == spec.version, "same bytes, same version"
    assert resolve_model(str(folder), version=7).version == "7"
    write_bundle(folder, tmp_path / "anon.gyre")
    anon = resolve_model(str(tmp_path / "anon.gyre"))
    assert (anon.name, anon.version) == ("anon", spec.version)
    write_bundle(folder, tmp_path / "named.gyre", name="churn", version=4)
    named = resolve_model(str(tmp_path / "named.gyre"))
    assert (named.name, named.version) == ("churn", "4")
    with pytest.raises(InvalidArgument, match="registry version"):
        resolve_model("models:/svc@champion", version=3)

    log = FakeLog()
    async with serving([spec.load()], prediction_log=log) as client:
        answer = await client.post("/predict/svc", json=[{"x": 2.0}])
    assert answer.headers["x-gyre-model-version"] == answer.json()["version"] == spec.version
    assert [r.version for r in log.records] == [int(spec.version)]
    assert log_version("12") == 12 and log_version("v2-beta") == log_version("v2-beta") > 0


# -- the command -------------------------------------------------------------------------


def test_serve_resolves_the_challenger_and_refuses_what_makes_no_sense(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    one, two = register(1.0), register(2.0)
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    registry.set_alias("svc", "challenger", two)
    registry.close()
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(_listen, "run", lambda app, **kw: calls.append(kw))
    for name in ("_GYRE_SERVE_SPEC", "GYRE_TRACKING_URI"):
        monkeypatch.setenv(name, "-")
        monkeypatch.delenv(name)
    result = CliRunner().invoke(
        _cli(),
        [
            "serve",
            "models:/svc@champion",
            "--canary",
            "challenger:10",
            "--reload-interval",
            "5",
            "--port",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "canary 10%: v2" in result.output and "alias reload every 5 s" in result.output
    import os

    spec = json.loads(os.environ["_GYRE_SERVE_SPEC"])
    [challenger] = spec["challengers"]
    assert (challenger["source"], challenger["version"], challenger["mode"],
            challenger["percent"]) == ("models:/svc@challenger", "2", "canary", 10.0)  # fmt: skip
    assert spec["reload_interval"] == 5.0
    from gyre.serving._entry import app_from_env

    async def through_the_workers_app() -> dict[str, str]:
        app = app_from_env()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c, lifespan(app):
            status = (await c.get("/admin/status")).json()["models"]["svc"]
            assert status["challenger"]["mode"] == "canary"
            assert status["reload"][0]["alias"] == "champion"
            answers = {
                rid: await c.post("/predict/svc", json=[{"x": 1.0}], headers={"X-Request-ID": rid})
                for rid in ids
            }
        return {rid: a.headers["x-gyre-model-version"] for rid, a in answers.items()}

    ids = [f"r{i}" for i in range(60)]
    expected = {rid: "2" if in_canary(rid, 10) else "1" for rid in ids}
    assert set(expected.values()) == {"1", "2"}
    assert asyncio.run(through_the_workers_app()) == expected

    for args, message in (
        (["models:/svc@champion", "--canary", "challenger"], "is not ALIAS:PERCENT"),
        (
            ["models:/svc@champion", "--canary", "challenger:150"],
            "the share '150' is not a percentage above 0 and at most 100",
        ),
        (["models:/svc@champion", "--canary", "challenger:0"], "the share '0' is not"),
        (["models:/svc@champion", "--canary", "c:5", "--shadow", "c"], "both name a challenger"),
        (["models:/svc@champion", "--shadow", "nope"], "no alias 'nope'"),
        (["models:/svc@champion", "--sync-to", "http://x"], "is for edge mode"),
        (["--bundle", "b.gyre", "models:/svc@champion"], "serves the bundle alone"),
        ([], "nothing to serve"),
    ):
        failed = CliRunner().invoke(_cli(), ["serve", *args, "--port", "0"])
        assert failed.exit_code != 0, args
        assert message in str(failed.exception), (args, failed.exception)


def test_admin_reload_reaches_every_worker_of_gyre_serve(tmp_path: Path) -> None:
    """``gyre serve --workers 2`` with polling off: ``POST /admin/reload`` reaches one
    worker, and both must switch to where the alias points now; the answer says how many
    workers checked, and how many serve where the alias points (a version failing to load
    leaves each on the version it had)."""
    from tests.test_serving_process import _gyre_serve

    one, two, broken = register(1.0), register(2.0), register("broken")
    registry = Registry()
    registry.set_alias("svc", "champion", one)
    args = ["models:/svc@champion", "--workers", "2", "--reload-interval", "0", "--no-log"]
    with _gyre_serve(tmp_path, args, dict(os.environ)) as (_, url):
        registry.set_alias("svc", "champion", two)
        answer = httpx.post(f"{url}/admin/reload", timeout=90)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gyre-workers-checked"] == "2/2"
        assert answer.headers["x-gyre-workers-current"] == "2/2"
        assert answer.json()["svc"]["version"] == str(two)
        # a connection each: the two workers take turns accepting them
        versions = [
            httpx.post(f"{url}/predict/svc", json=[{"x": 1.0}]).headers["x-gyre-model-version"]
            for _ in range(40)
        ]
        registry.set_alias("svc", "champion", broken)
        failing = httpx.post(f"{url}/admin/reload", timeout=90)
        assert failing.headers["x-gyre-workers-checked"] == "2/2"
        assert failing.headers["x-gyre-workers-current"] == "0/2", "neither could load it"
        # GET /admin/status answers for one worker, and with ?workers=all for each
        one_worker = httpx.get(f"{url}/admin/status", timeout=30).json()
        assert one_worker["workers"]["count"] == 2 and "status" not in one_worker["workers"]
        every = httpx.get(f"{url}/admin/status", params={"workers": "all"}, timeout=30).json()
        assert every["workers"]["answered"] == 2
        assert str(every["workers"]["answering"]) in every["workers"]["status"]
        for pid, worker in every["workers"]["status"].items():
            (reload,) = worker["models"]["svc"]["reload"]
            assert worker["models"]["svc"]["version"] == str(two), pid
            assert reload["failing"] and reload["alias_version"] == str(broken), pid
        wrong = httpx.get(f"{url}/admin/status", params={"workers": "some"}, timeout=30)
        assert wrong.status_code == 400 and "workers='some' is not known" in wrong.text
        registry.set_alias("svc", "champion", two)  # back: nothing failing any more
        back = httpx.post(f"{url}/admin/reload", timeout=90)
        assert back.headers["x-gyre-workers-current"] == "2/2"
    registry.close()
    assert set(versions) == {str(two)}


async def test_workers_take_the_admin_requests_of_the_others(tmp_path: Path) -> None:
    from gyre.serving._peers import Peers

    asker, other = Peers(tmp_path, 2, poll_s=0.01), Peers(tmp_path, 2, poll_s=0.01)
    asker.pid, other.pid = 101, 102  # (in one process here)
    late = Peers(tmp_path, 2, poll_s=0.01)  # (started below)
    late.pid = 103
    taken: list[tuple[str, dict[str, Any]]] = []

    async def act(action: str, args: dict[str, Any]) -> dict[str, Any]:
        taken.append((action, args))
        if args.get("fail"):
            raise RuntimeError("this worker could not")
        return {"done": action}

    following = asyncio.ensure_future(other.follow(act))
    try:
        asked = asker.ask("reload", {"retry": True})
        answers = await asker.answered(asked, timeout=30)
        assert {pid: (a["ok"], a["result"]) for pid, a in answers.items()} == {
            102: (True, {"done": "reload"})
        }
        assert taken == [("reload", {"retry": True})]
        answers = await asker.answered(asker.ask("reload", {"fail": True}), timeout=30)
        assert answers[102]["ok"] is False, "a failure is told"
        # the file deleted under the workers (a /tmp cleaner): they go on through their
        # descriptors
        asker.path.unlink()
        answers = await asker.answered(asker.ask("reload", {}), timeout=30)
        assert list(answers) == [102]
        # a worker started later (uvicorn replacing one) takes only what is asked from then
        later: list[str] = []
        late._offset = os.fstat(late._fd).st_size  # (as if it started now)

        async def note(action: str, args: dict[str, Any]) -> None:
            later.append(action)

        following_late = asyncio.ensure_future(late.follow(note))
        asker.workers = 3
        answers = await asker.answered(asker.ask("sync", {}), timeout=30)
        assert sorted(answers) == [102, 103] and later == ["sync"]
        following_late.cancel()
        # nobody answers: the asker stops waiting at the timeout
        following.cancel()
        assert await asker.answered(asker.ask("reload", {}), timeout=0.05) == {}
    finally:
        following.cancel()
        for peers in (asker, other, late):
            peers.close()

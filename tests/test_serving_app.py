"""The prediction server in-process (httpx over ASGI): OIP v2, /predict, errors, limits, auth,
micro-batching, metrics, the prediction log hook and version swaps.

The helpers at the top (models, ``serving``) are shared by the other ``test_serving_*`` files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gyre.entities import Token
from gyre.models import Model, load_model, save_model
from gyre.predictions import PredictionBatch, PredictionGroup, PredictionRecord
from gyre.predictions._record import _split, encode_batch, encode_group
from gyre.serving import Batching, Limits, ServedModel, create_app

pytestmark = pytest.mark.anyio

N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- models ------------------------------------------------------------------------------


class Doubler:
    """A python-flavor model: doubles ``x``; fails on 666; answers one row short when given
    777; warns (a RuntimeWarning) on 555; sleeps ``config['sleep']`` s (on every call, or
    only on one holding ``config['sleep_on']`` when that is set)."""

    config: dict[str, Any] = {"sleep": 0.0}

    def load_context(self, context: Any) -> None:
        self.sleep = float(context.config.get("sleep", 0.0))
        self.sleep_on = context.config.get("sleep_on")

    def predict(self, context: Any, model_input: Any) -> Any:
        if self.sleep and (self.sleep_on is None or (model_input["x"] == self.sleep_on).any()):
            time.sleep(self.sleep)
        if (model_input["x"] == 666).any():
            raise ValueError("666 is not allowed")
        if (model_input["x"] == 555).any():
            warnings.warn("555 overflows", RuntimeWarning, stacklevel=1)
        if (model_input["x"] == 777).any():
            return model_input["x"].to_numpy()[:-1] * 2  # a broken model: a row short
        return model_input["x"].to_numpy() * 2


class BareDoubler:
    """A python-flavor model for whatever it is given: doubles ``x`` (a list or an array)."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, model_input: Any) -> Any:
        return np.asarray(model_input["x"], dtype=float) * 2


def classifier_data(n: int = 400, seed: int = 0) -> tuple[Any, Any]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, N_FEATURES)), columns=COLUMNS)
    label = (frame["f0"] + 0.5 * frame["f1"] - frame["f2"] > 0).astype(int).to_numpy()
    return frame, label


def save_classifier(path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, label = classifier_data()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, label)
    save_model(pipeline, path, input_example=frame[:5])
    return path


def save_doubler(path: Path, sleep: float = 0.0, sleep_on: float | None = None) -> Path:
    import pandas as pd

    model = Doubler()
    model.config = {"sleep": sleep, "sleep_on": sleep_on}
    save_model(model, path, input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_model(save_classifier(tmp_path_factory.mktemp("models") / "clf"))


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A tensor model: LinearRegression on a float64 array of 4 features."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4))
    fitted = LinearRegression().fit(X, X @ np.array([1.0, -2.0, 0.5, 3.0]))
    path = tmp_path_factory.mktemp("models") / "reg"
    save_model(fitted, path, input_example=X[:3])
    return load_model(path)


@pytest.fixture(scope="module")
def doubler(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_model(save_doubler(tmp_path_factory.mktemp("models") / "doubler"))


@pytest.fixture(scope="module")
def slow_doubler(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_model(save_doubler(tmp_path_factory.mktemp("models") / "slow", sleep=0.3))


# -- the app in-process ------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol (httpx's ASGITransport does not)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        stopped = await outbox.get()
        await task
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


@asynccontextmanager
async def serving(
    models: Sequence[ServedModel], *, start: bool = True, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of ``create_app(models, **options)``, started unless ``start=False``."""
    app = create_app(models, **options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
        if not start:
            yield client
            return
        async with lifespan(app):
            yield client


def records(frame: Any) -> list[dict[str, Any]]:
    return [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def oip_matrix(rows: np.ndarray, datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": datatype,
                "data": rows.tolist(),
            }
        ]
    }
    body.update(extra)
    return body


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def _rows_of(batch: PredictionBatch) -> list[PredictionRecord]:
    """The rows a batch stands for, as records. The batch is encoded as the log encodes
    it first: what the server hands the log must be loggable."""
    encode_batch(batch)
    if batch.columns is not None:
        inputs = [dict(zip(batch.columns, _plain(row), strict=True)) for row in batch.inputs]
    else:
        columns = {k: list(_plain(v)) for k, v in batch.inputs.items()}
        n = len(next(iter(columns.values())))
        inputs = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    n = len(inputs)
    outs = {k: list(_plain(v)) for k, v in batch.outputs.items()}
    outputs = [{k: v[i] for k, v in outs.items()} for i in range(n)]
    rid = batch.request_id
    ids = [rid] if n == 1 else [f"{rid}:{i}" for i in range(n)]
    return [
        PredictionRecord(
            i,
            batch.timestamp_ms,
            batch.model,
            batch.version,
            inp,
            out,
            batch.latency_ms,
            batch.variant,
        )
        for i, inp, out in zip(ids, inputs, outputs, strict=True)
    ]


@dataclass
class FakeLog:
    """In-memory stand-in for gyre.predictions.PredictionLog."""

    records: list[Any] = field(default_factory=list)
    feedback: list[tuple[str, list[tuple[str, Any]]]] = field(default_factory=list)
    closed: bool = False

    def append(self, records: Sequence[Any]) -> None:
        for record in records:
            if isinstance(record, PredictionBatch):
                self.records.extend(_rows_of(record))
            elif isinstance(record, PredictionGroup):  # the requests answered together
                encode_group(record)  # (loggable: it raises otherwise)
                for batch in _split(record):
                    self.records.extend(_rows_of(batch))
            else:
                self.records.append(record)

    def append_feedback(self, model: str, labels: Sequence[tuple[str, Any]]) -> Any:
        self.feedback.append((model, list(labels)))
        return None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def stats(self) -> dict[str, float]:
        return {"unsynced_records": 0.0, "oldest_unsynced_ms": 1.5}


# -- health and metadata -----------------------------------------------------------------


async def test_health_and_server_metadata(classifier: Model) -> None:
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        live = await client.get("/v2/health/live")
        ready = await client.get("/v2/health/ready")
        meta = await client.get("/v2")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert meta.json()["name"] == "gyre"
    assert "binary_tensor_data" in meta.json()["extensions"]
    assert meta.json()["version"]


async def test_not_ready_before_startup_is_503(classifier: Model) -> None:
    async with serving([ServedModel("clf", "1", classifier)], start=False) as client:
        ready = await client.get("/v2/health/ready")
        model_ready = await client.get("/v2/models/clf/ready")
        infer = await client.post("/v2/models/clf/infer", json=oip_matrix(np.zeros((1, 20))))
        live = await client.get("/v2/health/live")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    assert model_ready.status_code == 503
    assert infer.status_code == 503
    assert "not loaded" in infer.json()["error"]
    assert infer.headers["retry-after"] == "1"
    assert live.status_code == 200


async def test_model_metadata_column_model(classifier: Model) -> None:
    async with serving([ServedModel("clf", "7", classifier)]) as client:
        meta = await client.get("/v2/models/clf")
        pinned = await client.get("/v2/models/clf/versions/7")
        ready = await client.get("/v2/models/clf/versions/7/ready")
    assert meta.status_code == 200
    body = meta.json()
    assert body["name"] == "clf" and body["versions"] == ["7"] and body["platform"] == "sklearn"
    assert body["inputs"] == [
        {
            "name": "input-0",
            "datatype": "FP64",
            "shape": [-1, N_FEATURES],
            "parameters": {"columns": COLUMNS},
        }
    ]
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["shape"] == [-1] and outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"]["shape"] == [-1, 2]
    assert outputs["predict_proba"]["parameters"]["classes"] == [0, 1]
    assert pinned.json() == body
    assert (ready.status_code, ready.json()) == (200, {"name": "clf", "ready": True})


async def test_model_metadata_mixed_columns_are_one_tensor_each(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0, 60.0], "city": ["a", "b", "a", "b"]})
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    save_model(pipeline, tmp_path / "mixed", input_example=frame)
    model = load_model(tmp_path / "mixed")
    async with serving([ServedModel("mixed", "1", model)]) as client:
        meta = (await client.get("/v2/models/mixed")).json()
        answer = await client.post(
            "/v2/models/mixed/infer",
            json={
                "inputs": [
                    {"name": "age", "shape": [2], "datatype": "FP64", "data": [31, 59]},
                    {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                ]
            },
        )
    assert meta["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
    ]
    assert answer.status_code == 200, answer.text
    expected = model.predict({"age": [31.0, 59.0], "city": ["a", "b"]}).tolist()
    assert answer.json()["outputs"][0]["data"] == expected


async def test_unknown_model_and_version_are_404(classifier: Model) -> None:
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answers = [
            await client.get("/v2/models/nope"),
            await client.get("/v2/models/clf/versions/9"),
            await client.get("/v2/models/clf/versions/9/ready"),
            await client.post("/v2/models/nope/infer", json=oip_matrix(np.zeros((1, 20)))),
            await client.post(
                "/v2/models/clf/versions/9/infer", json=oip_matrix(np.zeros((1, 20)))
            ),
            await client.post("/predict/nope", json={"records": [{}]}),
        ]
        route = await client.get("/nowhere")
        wrong_methods = [await client.get("/predict/clf"), await client.post("/metrics")]
    assert [a.status_code for a in answers] == [404] * 6
    # a method the route does not take is a 405 that says which it does (RFC 9110 15.5.6)
    assert [(w.status_code, w.headers.get("allow")) for w in wrong_methods] == [
        (405, "POST"),
        (405, "GET, HEAD"),
    ]
    assert wrong_methods[0].json()["message"] == "method not allowed: 'GET /predict/clf'"
    assert wrong_methods[0].json()["hint"] == "use POST"
    assert "model 'nope' is not served here" in answers[0].json()["error"]
    assert "served models: clf" in answers[0].json()["error"]
    assert "no version '9'" in answers[1].json()["error"]
    assert answers[5].json()["error_code"] == "NOT_FOUND"
    assert route.status_code == 404 and route.json()["error_code"] == "NOT_FOUND"


# -- inference ---------------------------------------------------------------------------


async def test_infer_column_model_matrix_and_per_column(classifier: Model) -> None:
    frame, _ = classifier_data(5, seed=3)
    rows = frame.to_numpy()
    expected = classifier.predict(frame)
    proba = classifier.predict_proba(frame)
    per_column = {
        "inputs": [
            {"name": c, "shape": [5], "datatype": "FP64", "data": frame[c].tolist()}
            for c in COLUMNS
        ]
    }
    async with serving([ServedModel("clf", "3", classifier)]) as client:
        matrix = await client.post(
            "/v2/models/clf/infer",
            json=oip_matrix(rows, id="req-42", outputs=[{"name": "predict_proba"}]),
            headers={"X-Request-ID": "trace-1"},
        )
        columns = await client.post("/v2/models/clf/versions/3/infer", json=per_column)
        fp32 = await client.post("/v2/models/clf/infer", json=oip_matrix(rows, "FP32"))
    assert matrix.status_code == 200, matrix.text
    assert matrix.headers["x-request-id"] == "trace-1"
    assert matrix.headers["x-gyre-model-version"] == "3"
    body = matrix.json()
    assert body["id"] == "req-42" and body["model_name"] == "clf" and body["model_version"] == "3"
    [out] = body["outputs"]
    assert out["name"] == "predict_proba" and out["shape"] == [5, 2] and out["datatype"] == "FP64"
    np.testing.assert_allclose(np.reshape(out["data"], (5, 2)), proba, rtol=1e-12)
    [predicted] = columns.json()["outputs"]
    assert predicted["name"] == "predict" and predicted["data"] == expected.tolist()
    assert columns.json()["id"] == columns.headers["x-request-id"]  # no id sent: ours
    assert fp32.status_code == 200


async def test_infer_tensor_model_flat_and_nested_data(regressor: Model) -> None:
    rows = np.arange(8, dtype=np.float64).reshape(2, 4)
    expected = regressor.predict(rows)
    async with serving([ServedModel("reg", "1", regressor)]) as client:
        meta = (await client.get("/v2/models/reg")).json()
        nested = await client.post("/v2/models/reg/infer", json=oip_matrix(rows))
        flat = await client.post(
            "/v2/models/reg/infer",
            json={
                "inputs": [
                    {"name": "x", "shape": [2, 4], "datatype": "INT64", "data": list(range(8))}
                ]
            },
        )
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    for answer in (nested, flat):
        assert answer.status_code == 200, answer.text
        [out] = answer.json()["outputs"]
        assert out["shape"] == [2] and out["datatype"] == "FP64"
        np.testing.assert_allclose(out["data"], expected, rtol=1e-12)


async def test_infer_binary_tensor_extension(classifier: Model) -> None:
    frame, _ = classifier_data(3, seed=4)
    rows = frame.to_numpy().astype("<f4")
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [3, 20],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    ).encode()
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answer = await client.post(
            "/v2/models/clf/infer",
            content=header + rows.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert answer.status_code == 200, answer.text
    size = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:size])
    [out] = head["outputs"]
    assert out["parameters"]["binary_data_size"] == 3 * 8 and "data" not in out
    values = np.frombuffer(answer.content[size:], dtype="<i8")
    assert values.tolist() == classifier.predict(rows.astype(np.float64)).tolist()


async def test_infer_binary_sizes_that_do_not_fit_the_body_are_400(classifier: Model) -> None:
    """A binary_data_size that is not a byte count, one past the body, and bytes that no
    input claims are each a 400 saying which; none is read as tensor data."""
    rows = classifier_data(1, seed=4)[0].to_numpy().astype("<f8")

    def body(size: object, extra: bytes = b"") -> tuple[bytes, dict[str, str]]:
        tensor = {"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                  "parameters": {"binary_data_size": size}}  # fmt: skip
        header = json.dumps({"inputs": [tensor]}).encode()
        return header + rows.tobytes() + extra, {
            "Inference-Header-Content-Length": str(len(header))
        }

    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answers = []
        for size, extra in (("big", b""), (rows.nbytes + 8, b""), (rows.nbytes, b"\0" * 4)):
            content, headers = body(size, extra)
            answers.append(
                await client.post("/v2/models/clf/infer", content=content, headers=headers)
            )
        good = await client.post("/v2/models/clf/infer", content=body(rows.nbytes)[0],
                                 headers=body(rows.nbytes)[1])  # fmt: skip
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "binary_data_size 'big' is not a byte count" in answers[0].json()["error"]
    assert (
        "binary_data_size 168 runs past the body (160 binary bytes left)"
        in (answers[1].json()["error"])
    )
    assert (
        "the body holds 4 binary bytes past the inputs' binary_data_size (160 in all)"
        in (answers[2].json()["error"])
    )
    assert good.status_code == 200, good.text


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "malformed JSON body"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"inputs": []}', 400, "no 'inputs'"),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",'
            b' "data": ["a"]}]}',
            400,
            "input 'input-0' has datatype FP64 but holds string 'a' at flat index 0",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FLOAT",'
            b' "data": [1]}]}',
            400,
            "input 'input-0': datatype 'FLOAT' is not a protocol datatype",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [2, 20], "datatype": "FP64",'
            b' "data": [1, 2, 3]}]}',
            400,
            "input 'input-0': shape [2, 20] holds 40 values, but data has 3",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64",'
            b' "data": [1, 2, 3]}]}',
            400,
            "expected 20 features, got 3",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "INT8",'
            b' "data": [1, 300]}]}',
            400,
            "value 300 is outside INT8's range",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [2], "datatype": "INT64",'
            b' "data": [1, 2.5]}]}',
            400,
            "input 'input-0' has datatype INT64 but holds float 2.5 at flat index 1",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64",'
            b' "data": [[1, 2], [3]]}]}',
            400,
            "ragged",
        ),
        (
            b'{"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": [1]}]}',
            400,
            "input tensor 'f1' is missing (and 18 more)",
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",'
            b' "data": [' + b",".join([b"0"] * 20) + b']}], "outputs": [{"name": "nope"}]}',
            400,
            "output 'nope' is not an output of model 'clf'",
        ),
    ],
)
async def test_infer_bad_requests_are_400_naming_the_problem(
    classifier: Model, body: bytes, status: int, fragment: str
) -> None:
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answer = await client.post("/v2/models/clf/infer", content=body)
        after = await client.post("/v2/models/clf/infer", json=oip_matrix(np.zeros((1, 20))))
    assert answer.status_code == status
    assert set(answer.json()) == {"error"}
    assert fragment in answer.json()["error"]
    assert answer.headers["x-request-id"]
    assert after.status_code == 200  # the server keeps serving


class Identity:
    """A python-flavor model answering its input tensor as it got it."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, model_input: Any) -> Any:
        return model_input


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("UINT64", [1, 2**64 - 1]),  # numpy reads these as float64: 2**64 - 1 would be 0
        ("UINT64", [[1, 2**63 + 1], [7, 2**63]]),
        ("INT64", [1.0, 2**53 + 1]),  # a float beside it: 2**53 + 1 would lose its last bit
        ("INT64", [-(2**63), 2**63 - 1]),
    ],
)
async def test_infer_integer_tensors_reach_the_model_exactly(
    tmp_path: Path, datatype: str, data: list[Any]
) -> None:
    dtype = np.uint64 if datatype == "UINT64" else np.int64
    path = tmp_path / "identity"
    save_model(Identity(), path, input_example=np.zeros((2, 2) if isinstance(data[0], list)
                                                      else 2, dtype=dtype))  # fmt: skip
    served = ServedModel("id", "1", load_model(path))
    shape = [2, 2] if isinstance(data[0], list) else [2]
    tensor = {"name": "input-0", "shape": shape, "datatype": datatype, "data": data}
    async with serving([served]) as client:
        answer = await client.post("/v2/models/id/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    [out] = answer.json()["outputs"]
    assert out["datatype"] == datatype
    flat = [v for row in data for v in row] if isinstance(data[0], list) else data
    assert out["data"] == [int(v) for v in flat]


@pytest.mark.parametrize(
    ("datatype", "data", "fragment"),
    [
        ("UINT64", [1, 2**64], "value 18446744073709551616 is outside UINT64's range"),
        ("UINT64", [-1, 2**63], "value -1 is outside UINT64's range"),
        ("INT64", [1, 2**63], "value 9223372036854775808 is outside INT64's range"),
        ("INT64", [1.5, 2**63], "holds float 1.5 at flat index 0"),
        ("INT64", [1.0, None], "holds null at flat index 1"),
    ],
)
async def test_infer_integers_past_the_datatype_are_400(
    tmp_path: Path, datatype: str, data: list[Any], fragment: str
) -> None:
    dtype = np.uint64 if datatype == "UINT64" else np.int64
    path = tmp_path / "identity"
    save_model(Identity(), path, input_example=np.zeros(2, dtype=dtype))
    tensor = {"name": "input-0", "shape": [2], "datatype": datatype, "data": data}
    async with serving([ServedModel("id", "1", load_model(path))]) as client:
        answer = await client.post("/v2/models/id/infer", json={"inputs": [tensor]})
    assert answer.status_code == 400
    assert fragment in answer.json()["error"]


class TwoOutputs:
    """A python-flavor model with two named outputs and none called "predict"."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, model_input: Any) -> Any:
        x = np.asarray(model_input, dtype=np.float64)
        return {"label": (x.sum(axis=1) > 0).astype(np.int64), "score": x.sum(axis=1)}


async def test_infer_returns_the_outputs_asked_for(tmp_path: Path) -> None:
    """Without "outputs" a model without a "predict" output answers all of its outputs; a
    request naming outputs gets those, and naming one the model does not have ("predict"
    included) is 400 listing the ones it has."""
    path = tmp_path / "two"
    save_model(TwoOutputs(), path, input_example=np.zeros((2, 3)))
    x = [[1.0, 2.0, 3.0], [-4.0, 0.0, 1.0]]
    tensor = {"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": x}
    async with serving([ServedModel("two", "1", load_model(path))]) as client:
        meta = (await client.get("/v2/models/two")).json()
        default = await client.post("/v2/models/two/infer", json={"inputs": [tensor]})
        score = await client.post(
            "/v2/models/two/infer", json={"inputs": [tensor], "outputs": [{"name": "score"}]}
        )
        predict = await client.post(
            "/v2/models/two/infer", json={"inputs": [tensor], "outputs": [{"name": "predict"}]}
        )
    assert [o["name"] for o in meta["outputs"]] == ["label", "score"]
    assert default.status_code == 200, default.text
    assert {o["name"]: o["data"] for o in default.json()["outputs"]} == {
        "label": [1, 0],
        "score": [6.0, -3.0],
    }
    assert [o["name"] for o in score.json()["outputs"]] == ["score"]
    assert predict.status_code == 400
    assert predict.json()["error"] == (
        "output 'predict' is not an output of model 'two' (its outputs: label, score)"
    )


# -- /predict ----------------------------------------------------------------------------


async def test_predict_records_columns_and_proba(classifier: Model) -> None:
    frame, _ = classifier_data(4, seed=5)
    expected = classifier.predict(frame).tolist()
    proba = classifier.predict_proba(frame)
    async with serving([ServedModel("clf", "2", classifier)]) as client:
        by_records = await client.post("/predict/clf", json={"records": records(frame)})
        by_columns = await client.post(
            "/predict/clf?proba=true", json={"columns": {c: frame[c].tolist() for c in COLUMNS}}
        )
        bare = await client.post(
            "/predict/clf", json=records(frame), headers={"X-Request-ID": "mine"}
        )
        flagged = await client.post(
            "/predict/clf/versions/2", json={"records": records(frame), "return_proba": True}
        )
    assert by_records.status_code == 200, by_records.text
    body = by_records.json()
    assert body["predictions"] == expected
    assert body["model"] == "clf" and body["version"] == "2"
    assert body["request_id"] == by_records.headers["x-request-id"]
    assert "probabilities" not in body
    assert by_columns.json()["predictions"] == expected
    np.testing.assert_allclose(by_columns.json()["probabilities"], proba, rtol=1e-12)
    assert by_columns.json()["classes"] == [0, 1]
    assert bare.json()["request_id"] == "mine" and bare.json()["predictions"] == expected
    np.testing.assert_allclose(flagged.json()["probabilities"], proba, rtol=1e-12)


async def test_predict_errors_use_gyre_error_body(classifier: Model, regressor: Model) -> None:
    frame, _ = classifier_data(2, seed=6)
    rows = records(frame)
    bad_value = [rows[0], {**rows[1], "f3": "high"}]
    missing = [{k: v for k, v in r.items() if k != "f7"} for r in rows]
    renamed = [{("f_7" if k == "f7" else k): v for k, v in r.items()} for r in rows]
    async with serving(
        [ServedModel("clf", "1", classifier), ServedModel("reg", "1", regressor)]
    ) as client:
        wrong = await client.post("/predict/clf", json={"records": bad_value})
        absent = await client.post("/predict/clf", json={"records": missing})
        typo = await client.post("/predict/clf", json={"records": renamed})
        both = await client.post("/predict/clf", json={"records": rows, "columns": {}})
        junk = await client.post("/predict/clf", content=b"{oops")
        no_proba = await client.post("/predict/reg?proba=true", json={"instances": [[1, 2, 3, 4]]})
        good = await client.post("/predict/reg", json={"instances": [[1, 2, 3, 4]]})
        unsure = await client.post("/predict/clf?proba=maybe", json=rows)
        unsure_batch = await client.post("/batch/clf?format=csv&proba=maybe", content=b"f0\n1\n")
        said_no = await client.post("/predict/clf?proba=false", json=rows)
    assert wrong.status_code == 400
    assert wrong.json() == {
        "error_code": "SCHEMA_MISMATCH",
        "message": "column 'f3' expects float64, got string 'high' at row 1",
        "hint": "send float64 values (numbers, not strings)",
    }
    assert absent.json()["message"] == "column 'f7' is missing"
    assert typo.json()["hint"] == "did you mean 'f_7'?"
    for refused in (unsure, unsure_batch):  # not taken for "no" in silence
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"] == "query parameter proba='maybe' is not true or false"
    assert said_no.status_code == 200 and "probabilities" not in said_no.json()
    assert both.json()["error_code"] == "INVALID_ARGUMENT" and "exactly one of" in both.text
    assert junk.status_code == 400 and "malformed JSON body" in junk.json()["message"]
    assert no_proba.status_code == 400 and "has no predict_proba" in no_proba.json()["message"]
    assert good.status_code == 200


# -- failures, limits and overload -------------------------------------------------------


async def test_model_failure_is_500_for_that_request_only(
    doubler: Model, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving([ServedModel("dbl", "1", doubler)]) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/predict/dbl",
                    json={"records": [{"x": 666.0 if i == 5 else float(i)}]},
                    headers={"X-Request-ID": f"r{i}"},
                )
                for i in range(12)
            )
        )
        metrics = (await client.get("/metrics")).text
    failed = answers[5]
    assert failed.status_code == 500
    body = failed.json()
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "failed on request r5 (ValueError)" in body["message"]
    assert "Traceback" not in failed.text and "666 is not allowed" not in failed.text
    for i, answer in enumerate(answers):
        if i != 5:
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == [2.0 * i]
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "r5" and r.exc_info]
    assert logged, "the failure is logged with its request id and traceback"
    assert (
        'gyre_serving_errors_total{endpoint="predict",model="dbl",status="500",version="1"} 1.0'
        in metrics
    )


async def test_a_model_answering_fewer_rows_than_asked_fails_that_request(
    doubler: Model,
) -> None:
    """A model that returns a row short must not answer 200 with the rows it has: the
    client would take the answers for the wrong rows. Alone or batched with others."""
    async with serving([ServedModel("dbl", "1", doubler)]) as client:
        alone = await client.post(
            "/predict/dbl", json=[{"x": 1.0}, {"x": 777.0}], headers={"X-Request-ID": "short"}
        )
        oip = await client.post(
            "/v2/models/dbl/infer",
            json={"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 777]}]},
        )
        together = await asyncio.gather(
            *(client.post("/predict/dbl", json=[{"x": 777.0 if i == 3 else float(i)}])
              for i in range(8))
        )  # fmt: skip
    assert alone.status_code == 500, alone.text
    assert "failed on request short" in alone.json()["message"]
    assert oip.status_code == 500, oip.text
    assert [a.status_code for a in together] == [200, 200, 200, 500, 200, 200, 200, 200]
    assert [a.json()["predictions"] for i, a in enumerate(together) if i != 3] == [
        [2.0 * i] for i in range(8) if i != 3
    ]


async def test_a_model_without_a_signature_answers_columns(tmp_path: Path) -> None:
    """Without a signature the rows of a dict of columns are not known to the server: the
    model's answer is taken as it is (the row check needs the signature's count)."""
    save_model(BareDoubler(), tmp_path / "bare")  # no input example: no signature
    bare = load_model(tmp_path / "bare")
    assert bare.signature is None
    async with serving([ServedModel("bare", "1", bare)]) as client:
        columns = await client.post("/predict/bare", json={"columns": {"x": [1.0, 2.0, 3.0]}})
    assert columns.status_code == 200, columns.text
    assert columns.json()["predictions"] == [2.0, 4.0, 6.0]


async def test_micro_batching_coalesces_and_matches_unbatched(classifier: Model) -> None:
    frame, _ = classifier_data(48, seed=7)
    expected = classifier.predict(frame).tolist()
    expected_proba = classifier.predict_proba(frame)
    rows = records(frame)
    async with serving([ServedModel("clf", "1", classifier, batching=Batching(16, 50))]) as c:
        answers = await asyncio.gather(
            *(
                c.post(f"/predict/clf?proba={'true' if i % 2 else 'false'}", json=[row])
                for i, row in enumerate(rows)
            )
        )
        metrics = (await c.get("/metrics")).text
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["predictions"][0] for a in answers] == expected
    for i, answer in enumerate(answers):
        if i % 2:
            # Same model, other batch composition: equal up to float rounding of BLAS.
            np.testing.assert_allclose(
                answer.json()["probabilities"][0], expected_proba[i], rtol=1e-12
            )
        else:
            assert "probabilities" not in answer.json()
    calls = _sample(metrics, 'gyre_serving_batch_rows_count{model="clf",version="1"}')
    total = _sample(metrics, 'gyre_serving_batch_rows_sum{model="clf",version="1"}')
    assert total == 48
    assert calls <= 48 / 4, f"48 concurrent requests took {calls} predict calls"
    assert (
        _sample(metrics, 'gyre_serving_batch_rows_bucket{le="16.0",model="clf",version="1"}')
        == calls
    )


def _sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in metrics:\n{metrics}")


async def test_bad_neighbours_do_not_fail_a_batch(classifier: Model) -> None:
    frame, _ = classifier_data(12, seed=8)
    rows = records(frame)
    expected = classifier.predict(frame).tolist()

    def body(i: int) -> dict[str, Any]:
        if i % 4 == 1:
            return {"records": [{**rows[i], "f0": "bad"}]}
        if i % 4 == 3:
            return {"records": [{k: v for k, v in rows[i].items() if k != "f9"}]}
        return {"records": [rows[i]]}

    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answers = await asyncio.gather(
            *(client.post("/predict/clf", json=body(i)) for i in range(12))
        )
        metrics = (await client.get("/metrics")).text
    for i, answer in enumerate(answers):
        if i % 4 == 1:  # joined a batch, failed its validation: its own row numbers
            assert answer.json()["message"] == (
                "column 'f0' expects float64, got string 'bad' at row 0"
            )
        elif i % 4 == 3:  # refused before batching
            assert answer.json()["message"] == "column 'f9' is missing"
        else:
            assert answer.json()["predictions"] == [expected[i]]
    assert _sample(metrics, 'gyre_serving_batch_rows_count{model="clf",version="1"}') < 9


async def test_mixed_input_shapes_in_one_batch(classifier: Model) -> None:
    frame, _ = classifier_data(16, seed=14)
    expected = classifier.predict(frame).tolist()
    rows = records(frame)

    def call(client: httpx.AsyncClient, i: int) -> Any:
        one = frame.iloc[[i]]
        kind = i % 4
        if kind == 0:
            return client.post("/predict/clf", json={"records": [{**rows[i], "extra": "x"}]})
        if kind == 1:
            columns = {c: one[c].tolist() for c in COLUMNS}
            return client.post("/predict/clf", json={"columns": columns})
        if kind == 2:
            datatype = "FP32" if i % 8 else "FP64"
            return client.post("/v2/models/clf/infer", json=oip_matrix(one.to_numpy(), datatype))
        tensors = [
            {"name": c, "shape": [1], "datatype": "FP64", "data": one[c].tolist()} for c in COLUMNS
        ]
        return client.post("/v2/models/clf/infer", json={"inputs": tensors})

    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answers = await asyncio.gather(*(call(client, i) for i in range(16)))
    got = [
        a.json()["predictions"][0]
        if "predictions" in a.json()
        else a.json()["outputs"][0]["data"][0]
        for a in answers
    ]
    assert got == expected


async def test_overload_is_429_with_retry_after(slow_doubler: Model) -> None:
    batching = Batching(max_batch_size=1, max_latency_ms=0, max_queue_rows=2)
    async with serving([ServedModel("slow", "1", slow_doubler, batching=batching)]) as client:
        answers = await asyncio.gather(
            *(client.post("/predict/slow", json=[{"x": float(i)}]) for i in range(8))
        )
        metrics = (await client.get("/metrics")).text
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(429) >= 4 and statuses.count(200) >= 2, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error_code"] == "OVERLOADED"
    assert "model 'slow' version 1 has" in refused.json()["message"]
    assert "rows queued" in refused.json()["message"]
    assert 'gyre_serving_queue_rows{model="slow",version="1"} 0.0' in metrics


async def test_request_bodies_held_at_once_are_bounded(slow_doubler: Model) -> None:
    """Past ``max_inflight_bytes`` of declared bodies held at once, a request is refused
    with 503 + Retry-After before its body is read (many large bodies parsed at once
    would take gigabytes); one request alone is never refused by it; once the others are
    answered, the next is taken."""
    body = json.dumps([{"x": float(i)} for i in range(40)]).encode()  # ~ 600 bytes
    limits = Limits(max_inflight_bytes=len(body) + 100)
    async with serving([ServedModel("slow", "1", slow_doubler)], limits=limits) as client:
        both = await asyncio.gather(*(client.post("/predict/slow", content=body)
                                      for _ in range(2)))  # fmt: skip
        alone = await client.post(
            "/predict/slow", content=json.dumps([{"x": 1.0}] * 200).encode()
        )  # (over the budget by itself, but alone)
        after = await client.post("/predict/slow", content=body)
    statuses = sorted(a.status_code for a in both)
    assert statuses == [200, 503], statuses
    refused = next(a for a in both if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "bytes of request bodies" in refused.json()["message"]
    assert alone.status_code == 200 and after.status_code == 200


async def test_request_timeout_is_504_with_request_id(slow_doubler: Model) -> None:
    limits = Limits(request_timeout_s=0.05)
    async with serving([ServedModel("slow", "1", slow_doubler)], limits=limits) as client:
        late = await client.post(
            "/v2/models/slow/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]},
            headers={"X-Request-ID": "late-1"},
        )
    assert late.status_code == 504
    assert "request late-1 was not answered within 0.05 s" in late.json()["error"]


async def test_oversized_bodies_are_413(classifier: Model) -> None:
    limits = Limits(max_request_bytes=2048)
    big = {"records": records(classifier_data(40)[0])}

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps(big).encode()
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    async with serving([ServedModel("clf", "1", classifier)], limits=limits) as client:
        declared = await client.post("/predict/clf", json=big)
        streamed = await client.post("/predict/clf", content=chunks())
        oip = await client.post("/v2/models/clf/infer", content=chunks())
        small = await client.post("/predict/clf", json={"records": big["records"][:1]})
    assert declared.status_code == 413
    assert declared.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert "over the limit of 2048 bytes" in declared.json()["message"]
    assert streamed.status_code == 413
    assert oip.status_code == 413 and "over the limit" in oip.json()["error"]
    assert small.status_code == 200


async def test_compressed_bodies_are_decompressed_within_the_limit(classifier: Model) -> None:
    """gzip and deflate bodies (Content-Encoding) are read as what they decompress to (a
    deflate body also without its zlib wrapper, as some clients send it); one that would
    inflate past the body limit is 413 before it does; other codings and broken or cut
    streams are 400 naming the problem."""
    import gzip
    import zlib

    limits = Limits(max_request_bytes=4096)
    body = json.dumps({"records": records(classifier_data(3)[0])}).encode()
    bomb = gzip.compress(b'{"records": [' + b" " * 100_000 + b"]}")
    assert len(bomb) < 4096
    raw = zlib.compressobj(wbits=-15)
    sent = {
        "gzip": ("gzip", gzip.compress(body)),
        "deflate": ("deflate", zlib.compress(body)),
        "raw deflate": ("deflate", raw.compress(body) + raw.flush()),
        "one byte first": ("deflate", _first_byte_alone(zlib.compress(body))),
        "members": ("gzip", gzip.compress(body[:50]) + gzip.compress(body[50:])),
        "bomb": ("gzip", bomb),
        "br": ("br", body),
        "broken": ("gzip", b"\x1f\x8b not gzip at all"),
        "cut": ("gzip", gzip.compress(body)[:-12]),
    }
    async with serving([ServedModel("clf", "1", classifier)], limits=limits) as client:
        plain = await client.post("/predict/clf", content=body)
        answers = {
            name: await client.post(
                "/predict/clf", content=data, headers={"content-encoding": coding}
            )
            for name, (coding, data) in sent.items()
        }
        health = await client.get("/v2/health/ready", headers={"content-encoding": "gzip"})
        tensor = json.dumps(oip_matrix(classifier_data(2)[0].to_numpy())).encode()
        chunked = await client.post(
            "/v2/models/clf/infer",
            content=_chunks(gzip.compress(tensor)),
            headers={"content-encoding": "gzip"},
        )
    assert plain.status_code == 200 and health.status_code == 200  # (no body: nothing to do)
    for name in ("gzip", "deflate", "raw deflate", "one byte first", "members"):
        assert answers[name].status_code == 200, answers[name].text
        assert answers[name].json()["predictions"] == plain.json()["predictions"]
    assert chunked.status_code == 200, chunked.text
    bomb_answer = answers["bomb"].json()
    assert answers["bomb"].status_code == 413
    assert "over the limit of 4096 bytes once decompressed" in bomb_answer["message"]
    assert answers["br"].status_code == 400
    assert "Content-Encoding 'br' is not supported" in answers["br"].json()["message"]
    assert answers["broken"].status_code == 400
    assert "not valid gzip data" in answers["broken"].json()["message"]
    assert answers["cut"].status_code == 400
    assert "ends before its gzip data does" in answers["cut"].json()["message"]


async def _first_byte_alone(data: bytes) -> AsyncIterator[bytes]:
    """A body whose first piece is one byte (half of a zlib header)."""
    yield data[:1]
    yield data[1:]


async def _chunks(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- operations --------------------------------------------------------------------------


async def test_metrics_expose_the_series(classifier: Model) -> None:
    log = FakeLog()
    async with serving([ServedModel("clf", "4", classifier)], prediction_log=log) as client:
        await client.post("/predict/clf", json=records(classifier_data(3)[0]))
        await client.post("/predict/clf", json={"records": [{"f0": "x"}]})
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for series in (
        'gyre_serving_requests_total{endpoint="predict",model="clf",status="200",version="4"} 1.0',
        'gyre_serving_requests_total{endpoint="predict",model="clf",status="400",version="4"} 1.0',
        'gyre_serving_errors_total{endpoint="predict",model="clf",status="400",version="4"} 1.0',
        'gyre_serving_request_seconds_count{endpoint="predict",model="clf",version="4"} 2.0',
        'gyre_serving_batch_rows_sum{model="clf",version="4"} 3.0',
        'gyre_serving_queue_rows{model="clf",version="4"} 0.0',
        "gyre_serving_inflight_requests 1.0",
        'gyre_serving_rows_total{endpoint="predict",model="clf",version="4"} 3.0',
        "gyre_prediction_log_oldest_unsynced_seconds 0.0015",
        "gyre_prediction_log_unsynced_records 0.0",
    ):
        assert series in text, series
    assert "_created" not in text, "the series a scrape lists do not depend on the workers"


async def test_refusals_before_routing_count_under_the_model_named(classifier: Model) -> None:
    """A body over the limit, or a version the model does not have, is counted (and
    logged) under the served model the path names; a name no model has stays out of the
    labels. Rows are counted for every endpoint that scores them."""
    limits = Limits(max_request_bytes=2048)
    async with serving([ServedModel("clf", "4", classifier)], limits=limits) as client:
        big = await client.post("/predict/clf", content=b"[" + b" " * 4096 + b"]")
        version = await client.post("/predict/clf/versions/99", json=[{"f0": 1.0}])
        unknown = await client.post("/predict/nope", json=[{"f0": 1.0}])
        tensor = oip_matrix(classifier_data(2)[0].to_numpy())
        infer = await client.post("/v2/models/clf/infer", json=tensor)
        probes = [await client.get("/v2/models/clf/ready") for _ in range(3)]
        text = (await client.get("/metrics")).text
    assert (big.status_code, version.status_code, unknown.status_code) == (413, 404, 404)
    assert [p.status_code for p in probes] == [200] * 3
    assert infer.status_code == 200
    for series in (
        'gyre_serving_requests_total{endpoint="predict",model="clf",status="413",version=""} 1.0',
        'gyre_serving_requests_total{endpoint="predict",model="clf",status="404",version=""} 1.0',
        'gyre_serving_requests_total{endpoint="predict",model="",status="404",version=""} 1.0',
        'gyre_serving_rows_total{endpoint="infer",model="clf",version="4"} 2.0',
        # a model's readiness probe counts under the model, as its metadata does
        'gyre_serving_requests_total{endpoint="metadata",model="clf",status="200",version="4"} 3.0',
    ):
        assert series in text, series
    assert 'model="nope"' not in text
    assert 'endpoint="metadata",model=""' not in text


async def test_access_log_and_request_ids(
    classifier: Model, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gyre.serving.access")
    async with serving([ServedModel("clf", "5", classifier)]) as client:
        given = await client.post(
            "/predict/clf", json=records(classifier_data(2)[0]), headers={"X-Request-ID": "abc-1"}
        )
        invalid = await client.get("/v2/health/live", headers={"X-Request-ID": "bad id\x7f"})
        # ':' names the rows of a request in the log ('a:1' is row 1 of request 'a')
        colon = await client.get("/v2/health/live", headers={"X-Request-ID": "a:1"})
    assert given.headers["x-request-id"] == "abc-1"
    for answer, sent in ((invalid, "bad id\x7f"), (colon, "a:1")):
        assert answer.headers["x-request-id"] != sent
        assert len(answer.headers["x-request-id"]) == 16
    lines = [r for r in caplog.records if r.name == "gyre.serving.access"]
    predict = next(r for r in lines if r.__dict__["path"] == "/predict/clf")
    assert predict.__dict__["request_id"] == "abc-1"
    assert (predict.__dict__["model"], predict.__dict__["version"]) == ("clf", "5")
    assert predict.__dict__["status"] == 200 and predict.__dict__["rows"] == 2
    assert predict.__dict__["latency_ms"] > 0


async def test_json_log_format_carries_the_request_context() -> None:
    from gyre.serving._logging import JsonFormatter, RequestContextFilter, bind

    bind("req-9", "clf", "3")
    record = logging.makeLogRecord({"name": "gyre.serving", "msg": "hello %s", "args": ("x",)})
    RequestContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello x"
    assert (line["request_id"], line["model"], line["version"]) == ("req-9", "clf", "3")


class _Tokens:
    def __init__(self) -> None:
        self.tokens = {
            "s3cret-predict": Token("svc", ("predict",), 0, "s3cr"),
            "s3cret-read": Token("reader", ("read",), 0, "s3cr"),
            "s3cret-admin": Token("root", ("admin",), 0, "s3cr"),
            "s3cret-revoked": Token("old", ("predict",), 0, "s3cr", revoked_time=1),
        }

    def verify_token(self, secret: str) -> Token | None:
        return self.tokens.get(secret)


async def test_auth_needs_a_predict_token(classifier: Model) -> None:
    row = records(classifier_data(1)[0])

    def bearer(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    async with serving([ServedModel("clf", "1", classifier)], auth=_Tokens()) as client:
        anonymous = await client.post("/predict/clf", json=row)
        unknown = await client.post("/predict/clf", json=row, headers=bearer("nope"))
        revoked = await client.post("/predict/clf", json=row, headers=bearer("s3cret-revoked"))
        reader = await client.post("/v2/models/clf/infer", json={}, headers=bearer("s3cret-read"))
        ok = await client.post("/predict/clf", json=row, headers=bearer("s3cret-predict"))
        admin = await client.get("/metrics", headers=bearer("s3cret-admin"))
        health = await client.get("/v2/health/ready")
        metadata = await client.get("/v2/models/clf")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error_code"] == "UNAUTHORIZED"
    assert unknown.status_code == 401 and revoked.status_code == 401
    assert reader.status_code == 403
    assert "token 'reader' lacks the 'predict' scope" in reader.json()["error"]
    assert ok.status_code == 200 and admin.status_code == 200
    assert health.status_code == 200
    assert metadata.status_code == 401
    # a client without a token is not the model's error: anyone can send those
    text = admin.text
    assert 'status="401",version=""' in text and 'model="",status="401"' in text
    assert 'model="clf",status="401"' not in text and 'model="clf",status="403"' not in text


# -- the prediction log ------------------------------------------------------------------


async def test_predictions_are_logged_one_record_per_row(classifier: Model) -> None:
    log = FakeLog()
    frame, _ = classifier_data(3, seed=9)
    async with serving([ServedModel("clf", "12", classifier)], prediction_log=log) as client:
        one = await client.post(
            "/predict/clf?proba=true", json=records(frame)[:1], headers={"X-Request-ID": "one"}
        )
        many = await client.post(
            "/v2/models/clf/infer", json=oip_matrix(frame.to_numpy()), headers={"X-Request-ID": "m"}
        )
        assert one.status_code == many.status_code == 200
    assert log.closed
    ids = [r.request_id for r in log.records]
    assert ids == ["one", "m:0", "m:1", "m:2"]
    first = log.records[0]
    assert (first.model, first.version, first.variant) == ("clf", 12, "primary")
    assert set(first.inputs) == set(COLUMNS)
    assert float(first.inputs["f0"]) == frame["f0"].iloc[0]
    assert set(first.outputs) == {"prediction", "proba"}
    assert first.latency_ms > 0
    assert int(log.records[2].outputs["prediction"]) == many.json()["outputs"][0]["data"][1]


async def test_real_prediction_log_and_feedback(classifier: Model, tmp_path: Path) -> None:
    from gyre.predictions import PredictionLog

    log = PredictionLog(tmp_path / "spool", sync_interval_ms=5)
    async with serving([ServedModel("clf", "1", classifier)], prediction_log=log) as client:
        answer = await client.post("/predict/clf", json=records(classifier_data(2)[0]))
        rid = answer.json()["request_id"]
        one = await client.post("/feedback/clf", json={"request_id": f"{rid}:0", "label": 1})
        many = await client.post("/feedback/clf", json={"labels": [[f"{rid}:1", 0], ["x", 1]]})
        bad = await client.post("/feedback/clf", json={"label": 1})
        other = await client.post("/feedback/nope", json={"request_id": "a", "label": 1})
        whole = await client.post("/feedback/clf", json={"request_id": rid, "label": 1})
        stats = log.stats()
    # the request's own id names two rows: the answer says how to label them
    assert whole.status_code == 202 and whole.json()["matched"] == 0
    assert whole.json()["hint"] == (
        f"request {rid!r} had 2 rows, logged as '{rid}:0' .. '{rid}:1': label each row by its id"
    )
    assert one.status_code == 202 and one.json() == {
        "model": "clf",
        "accepted": 1,
        "matched": 1,
        "unmatched": 0,
    }
    assert many.json()["accepted"] == 2 and many.json()["matched"] == 1
    assert bad.status_code == 400 and "needs 'request_id' and 'label'" in bad.json()["message"]
    assert other.status_code == 404
    assert stats["appended_records"] >= 2


async def test_a_store_unreachable_at_shutdown_keeps_the_spool_without_a_crash(
    classifier: Model, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The last compaction failing at shutdown (the artifact store gone) is one error line;
    the shutdown finishes and the spool files stay for the next start to compact."""
    import shutil

    from gyre.artifacts import open_artifact_store
    from gyre.predictions import PredictionLog

    root = tmp_path / "artifacts"
    log = PredictionLog(tmp_path / "spool", open_artifact_store(str(root)), compact_interval_s=3600)
    async with serving([ServedModel("clf", "1", classifier)], prediction_log=log) as client:
        answer = await client.post("/predict/clf", json=records(classifier_data(3)[0]))
        shutil.rmtree(root, ignore_errors=True)
        root.write_text("a file where the store's folder should be")
    assert answer.status_code == 200
    errors = [r for r in caplog.records if "could not be compacted at shutdown" in r.message]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert list((tmp_path / "spool").glob("*.jsonl")), "the spool is kept"


async def test_feedback_labels_must_be_the_models_kind(
    classifier: Model, regressor: Model, tmp_path: Path
) -> None:
    """A classifier's labels are among its classes and a regressor's are numbers: a stray
    "yes" is a 400 naming it, before it reaches the log (where it would turn the model's
    integer labels into text)."""
    from gyre.predictions import PredictionLog

    log = PredictionLog(tmp_path / "spool", sync_interval_ms=5)
    served = [ServedModel("clf", "1", classifier), ServedModel("reg", "1", regressor)]
    async with serving(served, prediction_log=log) as client:
        word = await client.post("/feedback/clf", json={"request_id": "a", "label": "yes"})
        three = await client.post("/feedback/clf", json={"labels": [["a", 1], ["b", 3]]})
        good = await client.post("/feedback/clf", json={"labels": [["a", 1], ["b", 0]]})
        text = await client.post("/feedback/reg", json={"request_id": "c", "label": "1.5"})
        number = await client.post("/feedback/reg", json={"request_id": "c", "label": 1.5})
    assert word.status_code == 400
    assert word.json()["message"] == (
        "label 'yes' for request 'a' is not one of model 'clf''s classes [0, 1]"
    )
    assert three.status_code == 400 and "label 3 for request 'b'" in three.json()["message"]
    assert good.status_code == 202 and good.json()["accepted"] == 2
    assert text.status_code == 400 and "is not a number" in text.json()["message"]
    assert number.status_code == 202


async def test_feedback_labels_may_be_the_challengers_classes(
    classifier: Model, tmp_path: Path
) -> None:
    """Under a canary that knows a class the primary does not (a challenger trained on a new
    class), that class is a label the server takes; one neither knows is still refused."""
    from sklearn.linear_model import LogisticRegression

    from gyre.predictions import PredictionLog
    from gyre.serving import Challenger

    frame, label = classifier_data()
    three = label + (frame["f3"] > 1).to_numpy()  # classes 0, 1, 2
    save_model(LogisticRegression().fit(frame, three), tmp_path / "c3", input_example=frame[:5])
    canary = Challenger(ServedModel("clf", "2", load_model(tmp_path / "c3")), "canary", 10)
    log = PredictionLog(tmp_path / "spool", sync_interval_ms=5)
    async with serving(
        [ServedModel("clf", "1", classifier)], challengers=[canary], prediction_log=log
    ) as client:
        new_class = await client.post("/feedback/clf", json={"request_id": "a", "label": 2})
        unknown = await client.post("/feedback/clf", json={"request_id": "b", "label": 7})
    assert new_class.status_code == 202, new_class.text
    assert unknown.status_code == 400
    assert unknown.json()["message"] == (
        "label 7 for request 'b' is not one of model 'clf''s classes [0, 1, 2]"
    )


async def test_feedback_without_a_log_is_404(classifier: Model) -> None:
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        answer = await client.post("/feedback/clf", json={"request_id": "a", "label": 1})
    assert answer.status_code == 404
    assert "prediction log is off" in answer.json()["message"]


# -- slots -------------------------------------------------------------------------------


async def test_deploying_a_new_version_swaps_atomically(doubler: Model, classifier: Model) -> None:
    from gyre.serving._slots import Deployment, ModelSlot

    slot = ModelSlot("dbl")
    await slot.deploy(Deployment(ServedModel("dbl", "1", doubler)))
    first = slot.route()
    in_flight = asyncio.ensure_future(first.predict(first.prepare([{"x": 1.0}]), "a", proba=False))
    old = await slot.deploy(Deployment(ServedModel("dbl", "2", doubler)))
    assert old is first and old.retired
    assert (await in_flight)["predict"].tolist() == [2.0]  # drained on the old version
    assert slot.route().version == "2" and slot.versions == ["2"]
    with pytest.raises(LookupError, match="no version '1'"):
        slot.route("1")
    await slot.close()


def test_duplicate_names_are_refused(doubler: Model) -> None:
    from gyre.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="served twice"):
        create_app([ServedModel("a", "1", doubler), ServedModel("a", "2", doubler)])
    with pytest.raises(InvalidArgument, match="cannot be served"):
        ServedModel("a/b", "1", doubler)


def test_binary_bytes_round_trip() -> None:
    from gyre.serving._oip import _binary, _decode_binary

    raw = _binary(np.array(["oslo", "münchen"], dtype=object), "BYTES")
    assert raw[:4] == struct.pack("<I", 4)
    assert _decode_binary("city", "BYTES", [2], raw).tolist() == ["oslo", "münchen"]


def test_labels_are_not_checked_against_classes_a_served_classifier_does_not_declare() -> None:
    """A primary classifier that declares no classes took any label; a canary that declares
    some must not make the server refuse labels the primary may well have."""
    from types import SimpleNamespace

    from gyre.errors import InvalidArgument
    from gyre.serving._app import _check_labels

    open_ended = SimpleNamespace(kind="classifier", classes=None)
    binary = SimpleNamespace(kind="classifier", classes=[0, 1])
    _check_labels("m", [open_ended], [("a", "spam")])
    _check_labels("m", [open_ended, binary], [("a", "spam")])
    with pytest.raises(InvalidArgument, match="label 'spam' for request 'a'"):
        _check_labels("m", [binary], [("a", "spam")])

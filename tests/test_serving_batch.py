"""Batch scoring: ``gyre.serving.batch`` offline, ``POST /batch/{name}`` over HTTP (same bytes),
and ``gyre predict`` with bounded memory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from gyre.cli._serve_cmds import register
from gyre.models import Model
from gyre.serving import Limits, ServedModel
from gyre.serving.batch import score_file
from tests.test_serving_app import (
    COLUMNS,
    classifier,  # noqa: F401 - a fixture
    classifier_data,
    records,
    save_classifier,
    serving,
)

REPO = Path(__file__).resolve().parent.parent
CONTENT_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_frame(frame: Any, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        from gyre.serving import _json

        path.write_bytes(b"".join(_json.dumps(r) + b"\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path, index=False, row_group_size=1000)
    return path


def read_frame(data: bytes | Path, fmt: str) -> Any:
    import pandas as pd

    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    if fmt == "csv":
        return pd.read_csv(source)
    if fmt == "jsonl":
        return pd.read_json(source, lines=True, precise_float=True)
    return pd.read_parquet(source)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_score_file_in_chunks(classifier: Model, tmp_path: Path, fmt: str) -> None:  # noqa: F811
    frame, _ = classifier_data(2500, seed=11)
    source = write_frame(frame, tmp_path / f"in.{fmt}")
    seen: list[int] = []
    stats = score_file(
        classifier,
        source,
        tmp_path / f"out.{fmt}",
        batch_size=1000,
        proba=True,
        progress=seen.append,
    )
    assert stats.rows == 2500 and seen == [1000, 1000, 500]
    out = read_frame(tmp_path / f"out.{fmt}", fmt)
    assert list(out.columns) == [*COLUMNS, "prediction", "proba_0", "proba_1"]
    assert out["prediction"].tolist() == classifier.predict(frame).tolist()
    np.testing.assert_allclose(out[COLUMNS].to_numpy(), frame.to_numpy(), rtol=1e-14)
    np.testing.assert_allclose(
        out[["proba_0", "proba_1"]].to_numpy(), classifier.predict_proba(frame), rtol=1e-9
    )
    assert not list(tmp_path.glob(".*partial"))


def test_score_file_errors_name_the_problem(classifier: Model, tmp_path: Path) -> None:  # noqa: F811
    from gyre.errors import InvalidArgument, SchemaMismatch

    frame, _ = classifier_data(10)
    source = write_frame(frame.drop(columns=["f4"]), tmp_path / "in.csv")
    with pytest.raises(SchemaMismatch, match="column 'f4' is missing"):
        score_file(classifier, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(InvalidArgument, match="cannot tell the format of 'in.xlsx'"):
        score_file(classifier, "in.xlsx", tmp_path / "out.csv")


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_batch_over_http_equals_offline(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
    fmt: str,
) -> None:
    frame, _ = classifier_data(1200, seed=12)
    source = write_frame(frame, tmp_path / f"in.{fmt}")
    score_file(classifier, source, tmp_path / f"offline.{fmt}", batch_size=500, proba=True)
    offline = (tmp_path / f"offline.{fmt}").read_bytes()
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        by_type = await client.post(
            "/batch/clf?proba=true&batch_size=500",
            content=source.read_bytes(),
            headers={"Content-Type": CONTENT_TYPES[fmt]},
        )
        by_query = await client.post(
            f"/batch/clf?format={fmt}&batch_size=500&proba=1",
            content=source.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        metrics = (await client.get("/metrics")).text
    assert by_type.status_code == 200, by_type.text
    assert by_type.headers["content-type"].startswith(CONTENT_TYPES[fmt])
    assert by_type.headers["x-gyre-model-version"] == "1"
    assert by_type.content == offline == by_query.content
    assert read_frame(by_type.content, fmt)["prediction"].tolist() == (
        classifier.predict(frame).tolist()
    )
    assert 'gyre_serving_rows_total{endpoint="batch",model="clf",version="1"} 2400.0' in metrics


@pytest.mark.anyio
async def test_batch_over_http_errors(classifier: Model) -> None:  # noqa: F811
    frame, _ = classifier_data(20)
    good = frame.to_csv(index=False).encode()
    bad = frame.drop(columns=["f2"]).to_csv(index=False).encode()
    limits = Limits(max_upload_bytes=len(good) - 1)
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        unknown = await client.post("/batch/clf", content=good, headers={"Content-Type": "x/y"})
        missing = await client.post("/batch/clf?format=csv", content=bad)
        junk = await client.post("/batch/clf?format=parquet", content=b"not parquet")
        size = await client.post("/batch/clf?format=csv&batch_size=0", content=good)
        fmt = await client.post("/batch/clf?format=xlsx", content=good)
        ok = await client.post("/batch/clf?format=csv", content=good)
    async with serving([ServedModel("clf", "1", classifier)], limits=limits) as client:
        big = await client.post("/batch/clf?format=csv", content=good)
    assert unknown.status_code == 400 and "Content-Type 'x/y'" in unknown.json()["message"]
    assert missing.status_code == 400
    assert missing.json()["message"] == "column 'f2' is missing"
    assert junk.status_code == 400 and "cannot read the input as parquet" in junk.text
    # the hint speaks of the upload, never of the server's own spool file
    assert "Content-Type or ?format=" in junk.json()["hint"] and "gyre-batch" not in junk.text
    assert size.status_code == 400 and "batch_size must be between" in size.text
    assert fmt.status_code == 400 and "format 'xlsx' is not supported" in fmt.text
    assert ok.status_code == 200
    assert big.status_code == 413


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """gyre (test shell)."""

    return app


def test_gyre_predict_reports_rows_per_second(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
) -> None:
    frame, _ = classifier_data(3000, seed=13)
    model_dir = save_classifier(tmp_path / "model")
    source = write_frame(frame, tmp_path / "in.parquet")
    result = CliRunner().invoke(
        _cli(),
        ["predict", str(model_dir), "-i", str(source), "-o", str(tmp_path / "out.jsonl"),
         "--batch-size", "700"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scored 3,000 rows in" in result.output and "rows/s" in result.output
    out = read_frame(tmp_path / "out.jsonl", "jsonl")
    assert out["prediction"].tolist() == classifier.predict(frame).tolist()


def test_gyre_predict_memory_is_bounded_by_the_chunk(tmp_path: Path) -> None:
    """Scoring a 6x larger file in the same process barely raises the peak RSS."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    for name, rows in (("small", 50_000), ("large", 300_000)):
        table = pa.table({c: rng.normal(size=rows) for c in COLUMNS})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=20_000)
    model_dir = save_classifier(tmp_path / "model")
    script = textwrap.dedent(
        f"""
        import json, sys
        from tests.test_serving_batch import _cli

        def peak_mb():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024

        peaks = []
        for name in ("small", "large"):
            args = ["predict", {str(model_dir)!r}, "-i", {str(tmp_path)!r} + f"/{{name}}.parquet",
                    "-o", {str(tmp_path)!r} + f"/{{name}}-out.parquet", "--batch-size", "10000"]
            try:
                _cli()(args)
            except SystemExit as done:
                assert done.code == 0, done.code
            peaks.append(peak_mb())
        print(json.dumps(peaks))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    small_peak, large_peak = json.loads(done.stdout.strip().splitlines()[-1])
    large_data_mb = 300_000 * len(COLUMNS) * 8 / 2**20  # 46 MB as float64
    assert large_peak - small_peak < large_data_mb / 2, (small_peak, large_peak)
    assert pq.ParquetFile(tmp_path / "large-out.parquet").metadata.num_rows == 300_000


# -- what a file can get wrong -----------------------------------------------------------


def _with_bad_value(frame: Any, row: int, column: str, value: Any) -> Any:
    bad = frame.astype({column: object})
    bad.loc[row, column] = value
    return bad


def test_gyre_predict_names_the_bad_value_and_its_row_in_the_file(tmp_path: Path) -> None:
    """A value that is not a number in row 3456 of a CSV scored 1000 rows at a time is
    named, with its row counted in the file; a missing value too; the command fails with
    one line and writes no output."""
    frame, _ = classifier_data(5000, seed=14)
    model_dir = save_classifier(tmp_path / "model")
    word = write_frame(_with_bad_value(frame, 3456, "f3", "bad"), tmp_path / "word.csv")
    gap = write_frame(_with_bad_value(frame, 3456, "f3", None), tmp_path / "gap.parquet")
    out = tmp_path / "out.csv"
    runner = CliRunner()
    for source, message in [
        (word, "column 'f3' expects float64, got 'bad' at row 3456, which is not a number"),
        (gap, "column 'f3' has a missing value at row 3456"),
    ]:
        result = runner.invoke(
            _cli(), ["predict", str(model_dir), "-i", str(source), "-o", str(out),
                     "--batch-size", "1000"],
        )  # fmt: skip
        assert message in str(result.exception), (source, result.exception)
        assert not out.exists()


def test_score_file_refuses_rows_longer_than_the_header(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A CSV whose rows hold one field more than its header is refused, instead of being
    scored with every value under the next column's name."""
    from gyre.errors import InvalidArgument

    frame, _ = classifier_data(5)
    text = frame.to_csv(index=False).splitlines()
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("\n".join([text[0]] + [f"7,{line}" for line in text[1:]]) + "\n")
    with pytest.raises(
        InvalidArgument, match="the CSV rows have 21 fields but its header names 20"
    ):
        score_file(classifier, shifted, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("name", "content", "output", "message"),
    [
        ("in.csv", None, "no/such/folder/out.csv", "cannot write the output"),
        ("empty.parquet", b"", "out.parquet", "cannot read the input as parquet"),
        ("junk.parquet", b"PAR1 not really", "out.parquet", "cannot read the input as parquet"),
        ("empty.jsonl", b"", "out.parquet", "the jsonl input holds no rows"),
        ("empty.csv", b"", "out.csv", "cannot read the input as csv"),
        ("header.csv", b",".join(c.encode() for c in COLUMNS) + b"\n", "o.csv", "holds no rows"),
    ],
)
def test_gyre_predict_file_problems_are_one_line(
    tmp_path: Path, name: str, content: bytes | None, output: str, message: str
) -> None:
    """Files that cannot be read or written end the command with one red line naming the
    problem (exit 2), not a traceback."""
    from gyre.cli import main

    model_dir = save_classifier(tmp_path / "model")
    source = tmp_path / name
    if content is None:
        write_frame(classifier_data(5)[0], source)
    else:
        source.write_bytes(content)
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from gyre.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "predict", str(model_dir), "-i", str(source),
         "-o", str(tmp_path / output)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert main is not None
    assert code.returncode == 2, code.stderr
    assert message in code.stderr and "Traceback" not in code.stderr
    assert code.stderr.startswith("error: ") and code.stderr.count("\n") == 1, code.stderr
    if name == "empty.csv":  # the hint speaks of the file, not of an HTTP upload
        assert f"check that {str(source)!r} is a csv file" in code.stderr
        assert "POST /batch" not in code.stderr


def test_gyre_predict_says_in_one_line_where_the_model_failed(tmp_path: Path) -> None:
    """A model whose predict raises ends the command with one line naming the rows of
    the chunk and the model's own error (exit 1), no traceback, and no output file."""
    from tests.test_serving_app import save_doubler

    model_dir = save_doubler(tmp_path / "dbl")  # fails on 666
    source = tmp_path / "in.csv"
    source.write_text("x\n1\n2\n666\n4\n5\n")
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from gyre.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "predict", str(model_dir), "-i", str(source),
         "-o", str(tmp_path / "out.csv"), "--batch-size", "2"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "300", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert code.returncode == 1, code.stderr
    assert code.stderr.startswith(
        f"error: the model failed on rows 2-3 of {str(source)!r} (ValueError: 666 is not allowed)"
    ), code.stderr
    assert code.stderr.count("\n") == 1 and "Traceback" not in code.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.anyio
async def test_batch_over_http_says_which_rows_the_model_failed_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model raising on an uploaded chunk is a 500 naming the rows and the request id,
    not what the model said (that, with its traceback, is in the server's log)."""
    from gyre.models import load_model
    from tests.test_serving_app import save_doubler

    doubler = load_model(save_doubler(tmp_path / "dbl"))  # fails on 666
    async with serving([ServedModel("dbl", "1", doubler)]) as client:
        failed = await client.post(
            "/batch/dbl?format=csv&batch_size=2",
            content=b"x\n1\n2\n666\n4\n",
            headers={"X-Request-ID": "up-1"},
        )
    assert failed.status_code == 500, failed.text
    assert failed.json()["message"] == (
        "the model failed on rows 2-3 of the input (ValueError) in request up-1"
    )
    assert "666 is not allowed" not in failed.text and "Traceback" not in failed.text
    [logged] = [
        r for r in caplog.records if getattr(r, "request_id", None) == "up-1" and r.exc_info
    ]
    assert "666 is not allowed" in str(logged.exc_info[1])


def test_gyre_predict_cannot_write_over_a_folder(tmp_path: Path) -> None:
    """An output path that is a folder is the output's problem, in one line (exit 2), not
    the model's."""
    model_dir = save_classifier(tmp_path / "model")
    source = write_frame(classifier_data(5)[0], tmp_path / "in.csv")
    (tmp_path / "out.csv").mkdir()
    result = CliRunner().invoke(
        _cli(), ["predict", str(model_dir), "-i", str(source), "-o", str(tmp_path / "out.csv")]
    )
    assert "cannot write the output" in str(result.exception), result.exception
    assert "model failed" not in str(result.exception)


@pytest.mark.anyio
async def test_batch_over_http_is_all_or_nothing(classifier: Model) -> None:  # noqa: F811
    """A bad value in the last chunk of an upload is a 400 naming it and its row, before
    any scored byte is sent (not a 200 whose body stops short); the answer says its
    length."""
    frame, _ = classifier_data(2500, seed=15)
    bad = _with_bad_value(frame, 2345, "f1", "oops").to_csv(index=False).encode()
    good = frame.to_csv(index=False).encode()
    async with serving([ServedModel("clf", "1", classifier)]) as client:
        refused = await client.post("/batch/clf?format=csv&batch_size=500", content=bad)
        ok = await client.post("/batch/clf?format=csv&batch_size=500", content=good)
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "column 'f1' expects float64, got 'oops' at row 2345, which is not a number"
    )
    assert ok.status_code == 200
    assert int(ok.headers["content-length"]) == len(ok.content)
    assert read_frame(ok.content, "csv")["prediction"].tolist() == (
        classifier.predict(frame).tolist()
    )


@pytest.mark.anyio
async def test_batch_rows_are_logged_under_the_request_id(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Every row of an upload is in the prediction log as ``<request id>:<row in the
    file>``, with the file's values, its prediction and probabilities; feedback to one of
    those ids matches it."""
    from gyre.artifacts import open_artifact_store
    from gyre.predictions import PredictionLog, query

    frame, _ = classifier_data(1200, seed=16)
    store = open_artifact_store(str(tmp_path / "store"))
    log = PredictionLog(tmp_path / "spool", store, compact_interval_s=3600)
    async with serving([ServedModel("clf", "1", classifier)], prediction_log=log) as client:
        answer = await client.post(
            "/batch/clf?format=parquet&batch_size=500&proba=true",
            content=write_frame(frame, tmp_path / "in.parquet").read_bytes(),
            headers={"X-Request-ID": "upload-1"},
        )
        feedback = await client.post(
            "/feedback/clf", json={"request_id": "upload-1:1199", "label": 1}
        )
    assert answer.status_code == 200, answer.text
    assert feedback.status_code == 202 and feedback.json()["matched"] == 1
    rows = {r["request_id"]: r for r in query(store, "clf").to_pylist()}
    assert sorted(rows) == sorted(f"upload-1:{i}" for i in range(1200))
    scored = read_frame(answer.content, "parquet")
    proba = classifier.predict_proba(frame)
    for i in (0, 499, 500, 1199):
        row = rows[f"upload-1:{i}"]
        assert row["in_f0"] == frame["f0"].iloc[i]
        assert row["out_prediction"] == scored["prediction"].iloc[i]
        assert row["out_proba"] == pytest.approx(list(proba[i]))
        assert row["version"] == 1 and row["latency_ms"] > 0
    assert rows["upload-1:1199"]["label"] == 1


async def _refused_upload(
    model: Model,
    tmp_path: Path,
    request_id: str,
    seed: int,
    then: list[dict[str, Any]] | None = None,
) -> list[str]:
    """POST a 1,200-row CSV with a bad value at row 1,100 (chunks of 500) to a server that
    logs; it must be refused (400). Then ``then`` (records for ``/predict``, request id
    "p"), if given. The request ids the log holds afterwards."""
    from gyre.artifacts import open_artifact_store
    from gyre.predictions import PredictionLog, query

    frame, _ = classifier_data(1200, seed=seed)
    bad = _with_bad_value(frame, 1100, "f2", "oops").to_csv(index=False).encode()
    store = open_artifact_store(str(tmp_path / "store"))
    log = PredictionLog(tmp_path / "spool", store, compact_interval_s=3600)
    async with serving([ServedModel("clf", "1", model)], prediction_log=log) as client:
        refused = await client.post(
            "/batch/clf?format=csv&batch_size=500",
            content=bad,
            headers={"X-Request-ID": request_id},
        )
        assert refused.status_code == 400, refused.text
        if then is not None:
            ok = await client.post(
                "/predict/clf", json={"records": then}, headers={"X-Request-ID": "p"}
            )
            assert ok.status_code == 200, ok.text
    return [r["request_id"] for r in query(store, "clf").to_pylist()]


@pytest.mark.anyio
async def test_a_refused_upload_logs_none_of_its_rows(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An upload refused at its last chunk was not answered: none of its rows, not even
    those of the chunks scored before, is in the log."""
    one = records(classifier_data(1, seed=18)[0])
    assert await _refused_upload(classifier, tmp_path, "u2", seed=18, then=one) == ["p"]


@pytest.mark.anyio
async def test_a_large_upload_is_logged_as_it_is_scored(
    classifier: Model,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the rows held back (bounded memory), chunks are logged as they are scored: a
    larger upload refused later leaves its first chunks logged, as documented."""
    import gyre.serving._app as app_module

    monkeypatch.setattr(app_module, "_LOG_HOLD_ROWS", 500)
    logged = set(await _refused_upload(classifier, tmp_path, "u3", seed=19))
    assert logged == {f"u3:{i}" for i in range(1000)}  # the two chunks before the bad one


def test_gyre_predict_json_and_the_progress_total(tmp_path: Path) -> None:
    """--json prints the result for scripts (and no progress bar); a CSV's or JSON Lines
    file's row count, for the progress bar's total and time remaining, is read from its
    lines, with or without a last line break."""
    from gyre.cli._serve_cmds import _count_lines

    frame, _ = classifier_data(1234, seed=17)
    model_dir = save_classifier(tmp_path / "model")
    source = write_frame(frame, tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        _cli(), ["predict", str(model_dir), "-i", str(source), "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["rows"] == 1234 and printed["output"] == str(out)
    assert printed["rows_per_second"] > 0
    assert _count_lines(source, header=True) == 1234
    jsonl = write_frame(frame.head(7), tmp_path / "in.jsonl")
    assert _count_lines(jsonl, header=False) == 7
    jsonl.write_bytes(jsonl.read_bytes().rstrip(b"\n"))
    assert _count_lines(jsonl, header=False) == 7

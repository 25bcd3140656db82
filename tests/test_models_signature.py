"""Signatures: inferred from every input kind, enforced at predict time with exact messages."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gyre.errors import InvalidArgument, SchemaMismatch
from gyre.models import (
    ColumnSchema,
    ColumnSpec,
    Signature,
    TensorSchema,
    TensorSpec,
    infer_signature,
    load_model,
    save_model,
)
from tests.fixtures import models as m


def _columns(sig: Signature) -> list[tuple[str, str, bool, bool]]:
    assert isinstance(sig.inputs, ColumnSchema)
    return [(c.name, c.dtype, c.nullable, c.optional) for c in sig.inputs.columns]


PEOPLE = Signature(
    ColumnSchema(
        (
            ColumnSpec("age", "float64"),
            ColumnSpec("visits", "int64"),
            ColumnSpec("city", "string"),
            ColumnSpec("income", "float64", nullable=True, optional=True),
        )
    )
)
GOOD_ROWS = [
    {"age": 31.5, "visits": 3, "city": "oslo", "income": 1.0},
    {"age": 40.0, "visits": 0, "city": "rome", "income": 2.0},
    {"age": 22.0, "visits": 7, "city": "lima", "income": 3.0},
    {"age": 57.0, "visits": 1, "city": "pune", "income": None},
]


def _mismatch(data: object, sig: Signature = PEOPLE) -> str:
    with pytest.raises(SchemaMismatch) as info:
        sig.conform(data)
    return info.value.message


# -- inference ----------------------------------------------------------------------------


def test_a_dataframe_gives_named_columns_with_dtypes_and_missing_values_optional() -> None:
    frame = pd.DataFrame(
        {
            "age": [31.5, np.nan, 22.0],
            "visits": [3, 0, 7],
            "city": ["oslo", "rome", None],
            "member": [True, False, True],
            "small": np.array([1, 2, 3], dtype=np.float32),
        }
    )
    assert _columns(infer_signature(frame)) == [
        ("age", "float64", True, True),
        ("visits", "int64", False, False),
        ("city", "string", True, True),
        ("member", "bool", False, False),
        ("small", "float32", False, False),
    ]


def test_a_list_of_records_gives_columns_in_first_seen_order() -> None:
    records = [{"age": 31, "city": "oslo"}, {"age": 40.5, "city": "rome", "vip": True}]
    assert _columns(infer_signature(records)) == [
        ("age", "float64", False, False),
        ("city", "string", False, False),
        ("vip", "bool", True, True),  # absent from the first record: missing there
    ]


def test_a_dict_of_one_dimensional_arrays_gives_columns() -> None:
    sig = infer_signature({"x": np.arange(3), "label": np.array(["a", "b", "c"])})
    assert _columns(sig) == [("x", "int64", False, False), ("label", "string", False, False)]


def test_an_ndarray_gives_one_tensor_with_a_free_batch_dimension() -> None:
    sig = infer_signature(np.zeros((8, 3, 2), dtype=np.float32), np.zeros(8))
    assert sig.inputs == TensorSchema((TensorSpec("float32", (-1, 3, 2)),))
    assert sig.outputs == TensorSchema((TensorSpec("float64", (-1,)),))


def test_a_dict_of_multidimensional_arrays_gives_named_tensors() -> None:
    sig = infer_signature({"image": np.zeros((2, 4, 4)), "mask": np.ones((2, 4), dtype=bool)})
    assert sig.inputs == TensorSchema(
        (TensorSpec("float64", (-1, 4, 4), "image"), TensorSpec("bool", (-1, 4), "mask"))
    )


def test_nan_in_an_array_example_makes_the_tensor_nullable() -> None:
    sig = infer_signature(np.array([[1.0, np.nan]]))
    assert isinstance(sig.inputs, TensorSchema) and sig.inputs.tensors[0].nullable


def test_columns_can_be_marked_optional_explicitly() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert _columns(infer_signature(frame, optional=["b"]))[1] == ("b", "string", True, True)
    with pytest.raises(
        InvalidArgument, match=r"optional column\(s\) \['zz'\] are not in the example"
    ):
        infer_signature(frame, optional=["zz"])


def test_signatures_round_trip_through_dicts() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0, None]}), np.zeros((2, 3)))
    assert Signature.from_dict(sig.to_dict()) == sig


# -- enforcement: every input kind is accepted alike ------------------------------------------


def test_dataframe_records_dict_and_array_inputs_conform_alike() -> None:
    frame = pd.DataFrame(GOOD_ROWS)
    as_dict = {k: [r[k] for r in GOOD_ROWS] for k in GOOD_ROWS[0]}
    array = np.array([list(r.values()) for r in GOOD_ROWS], dtype=object)
    results = [PEOPLE.conform(x) for x in (frame, GOOD_ROWS, as_dict, array)]
    for result in results[1:]:
        assert list(result.columns) == list(results[0].columns)
        for name in result.columns:
            assert result.columns[name].dtype == results[0].columns[name].dtype
            np.testing.assert_array_equal(result.columns[name], results[0].columns[name])


def test_one_record_may_be_a_dict_of_scalars() -> None:
    table = PEOPLE.conform({"age": 30, "visits": 2, "city": "oslo"})
    assert table.n_rows == 1 and table.columns["age"].dtype == np.float64


def test_columns_are_taken_in_signature_order_and_extras_ignored_with_a_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [{"city": "oslo", "extra": 1, "visits": 2, "age": 3.0, "income": 4.0}]
    with caplog.at_level(logging.DEBUG, logger="gyre.models"):
        table = PEOPLE.conform(rows)
    assert list(table.columns) == ["age", "visits", "city", "income"]
    assert "ignoring input columns not in the signature: ['extra']" in caplog.text


def test_an_absent_optional_column_arrives_as_missing_values() -> None:
    table = PEOPLE.conform([{"age": 3.0, "visits": 2, "city": "oslo"}])
    assert np.isnan(table.columns["income"][0])


def test_ints_become_floats_and_integral_floats_become_ints() -> None:
    table = PEOPLE.conform([{"age": 30, "visits": 2.0, "city": "oslo"}])
    assert table.columns["age"].dtype == np.float64 and table.columns["age"][0] == 30.0
    assert table.columns["visits"].dtype == np.int64 and table.columns["visits"][0] == 2


# -- enforcement: one precise error per fault ---------------------------------------------------


def test_a_missing_column_is_named() -> None:
    rows = [{k: v for k, v in r.items() if k != "age"} for r in GOOD_ROWS]
    assert _mismatch(rows) == "column 'age' is missing"


def test_a_misspelt_column_gets_a_did_you_mean_hint() -> None:
    with pytest.raises(SchemaMismatch) as info:
        PEOPLE.conform([{"Age": 1.0, "visits": 2, "city": "oslo"}])
    assert info.value.hint == "did you mean 'Age'?"


def test_a_string_in_a_numeric_column_names_value_and_row() -> None:
    rows = [dict(r) for r in GOOD_ROWS]
    rows[3]["age"] = "abc"
    assert _mismatch(rows) == "column 'age' expects float64, got string 'abc' at row 3"
    frame = pd.DataFrame(rows)  # an object column in a DataFrame: same message
    assert _mismatch(frame) == "column 'age' expects float64, got string 'abc' at row 3"


def test_numeric_strings_are_not_parsed() -> None:
    rows = [dict(GOOD_ROWS[0], visits="3")]
    assert _mismatch(rows) == "column 'visits' expects int64, got string '3' at row 0"


def test_a_fraction_in_an_int_column_is_an_error() -> None:
    rows = [dict(GOOD_ROWS[0]), dict(GOOD_ROWS[1], visits=2.5)]
    assert _mismatch(rows) == "column 'visits' expects int64, got float 2.5 at row 1"


def test_a_number_in_a_string_column_is_an_error() -> None:
    rows = [dict(GOOD_ROWS[0], city=7)]
    assert _mismatch(rows) == "column 'city' expects string, got int 7 at row 0"


def test_a_bool_in_a_numeric_column_is_an_error() -> None:
    assert _mismatch([dict(GOOD_ROWS[0], age=True)]) == (
        "column 'age' expects float64, got bool True at row 0"
    )


def test_an_out_of_range_int_is_an_error() -> None:
    sig = Signature(ColumnSchema((ColumnSpec("n", "int8"),)))
    assert _mismatch({"n": [1, 300]}, sig) == (
        "column 'n' expects int8, got int 300 at row 1, outside int8's range"
    )


def test_integers_past_float_precision_arrive_exactly_and_past_int64_as_errors() -> None:
    """JSON integers are exact: 2**53 + 1 beside a whole float must not be rounded through
    float64; a uint64 column takes values past int64's range; an int64 column refuses them
    with the value named (not an OverflowError from numpy)."""
    big = 2**53 + 1
    sig = Signature(ColumnSchema((ColumnSpec("n", "int64"),)))
    assert sig.conform({"n": [1.0, big]}).columns["n"].tolist() == [1, big]
    assert sig.conform([{"n": 1.0}, {"n": big}]).columns["n"].tolist() == [1, big]
    unsigned = Signature(ColumnSchema((ColumnSpec("n", "uint64"),)))
    assert unsigned.conform({"n": [2**64 - 1]}).columns["n"].tolist() == [2**64 - 1]
    assert _mismatch({"n": [1, 2**63]}, sig) == (
        f"column 'n' expects int64, got int {2**63} at row 1, outside int64's range"
    )
    assert _mismatch({"n": [-1]}, unsigned) == (
        "column 'n' expects uint64, got int -1 at row 0, outside uint64's range"
    )
    floats = Signature(ColumnSchema((ColumnSpec("x", "float64"),)))
    assert floats.conform({"x": [1, 2**64]}).columns["x"].tolist() == [1.0, 2.0**64]
    too_big = _mismatch({"x": [1, 10**400]}, floats)  # (no float holds it: named, not raised)
    assert too_big.startswith("column 'x' expects float64, got int 1000")
    assert too_big.endswith("at row 1, outside float64's range")
    # with a missing value (floats then, NaN has no int) the range is checked all the same
    small = Signature(ColumnSchema((ColumnSpec("n", "int8", nullable=True),)))
    for values in ([None, 300], np.array([np.nan, 300.0])):
        assert _mismatch({"n": values}, small) == (
            "column 'n' expects int8, got int 300 at row 1, outside int8's range"
            if isinstance(values, list)
            else "column 'n' expects int8, got float 300.0 at row 1, outside int8's range"
        )
    kept = small.conform({"n": [None, 5, np.float32(7.0)]}).columns["n"]
    assert kept.dtype == np.float64 and kept.tolist()[1:] == [5.0, 7.0]


def test_a_missing_value_where_the_signature_forbids_it_names_column_and_row() -> None:
    rows = [dict(r) for r in GOOD_ROWS]
    rows[2]["age"] = None
    assert _mismatch(rows) == (
        "column 'age' has a missing value at row 2, and the signature does not allow "
        "missing values there"
    )
    frame = pd.DataFrame(rows)
    assert "column 'age' has a missing value at row 2" in _mismatch(frame)


def test_a_nullable_column_accepts_missing_values() -> None:
    table = PEOPLE.conform(GOOD_ROWS)
    assert np.isnan(table.columns["income"][3])


def test_an_array_of_the_wrong_width_says_how_many_features() -> None:
    sig = infer_signature(np.zeros((3, 20)))
    assert _mismatch(np.zeros((3, 19)), sig) == "expected 20 features, got 19"
    assert _mismatch(np.zeros((3, 3)), PEOPLE) == "expected 4 features, got 3"


def test_empty_input_of_any_kind_has_no_rows() -> None:
    tensor = infer_signature(np.zeros((3, 2)))
    for data, sig in [
        (pd.DataFrame(columns=["age", "visits", "city"]), PEOPLE),
        ([], PEOPLE),
        ({"age": [], "visits": [], "city": []}, PEOPLE),
        (np.zeros((0, 2)), tensor),
        ([], tensor),
    ]:
        assert _mismatch(data, sig) == "input has no rows"


def test_tensor_faults_name_row_and_feature() -> None:
    sig = infer_signature(np.zeros((3, 3), dtype=np.float32))
    assert _mismatch([[1.0, 2.0, np.nan]], sig) == (
        "input has a missing value at row 0, feature 2, and the signature does not allow "
        "missing values there"
    )
    assert _mismatch([[1.0, "abc", 2.0]], sig) == (
        "input expects float32, got string 'abc' at row 0, feature 1"
    )
    assert _mismatch([1.0, 2.0, 3.0], sig) == (
        "input expects a 2-D array of shape (-1, 3), got a 1-D array of length 3"
    )


def test_a_tensor_signature_accepts_a_dataframe_and_casts_to_its_dtype() -> None:
    sig = infer_signature(np.zeros((3, 2), dtype=np.float32))
    out = sig.conform(pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]}))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 2)


def test_named_tensors_must_all_be_present() -> None:
    sig = infer_signature({"image": np.zeros((2, 4, 4)), "mask": np.ones((2, 4))})
    assert _mismatch({"image": np.zeros((1, 4, 4))}, sig) == "input 'mask' is missing"
    assert _mismatch({"image": np.zeros((1, 4, 5)), "mask": np.ones((1, 4))}, sig) == (
        "input 'image' expects shape (-1, 4, 4), got (1, 4, 5)"
    )


# -- through a saved model: the same errors, never a library traceback --------------------------


@pytest.fixture(scope="module")
def people_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    model, frame = m.sklearn_pipeline()
    path = tmp_path_factory.mktemp("sig") / "model"
    save_model(model, path, input_example=frame.head(20))
    return load_model(path)


def test_predict_accepts_every_input_kind_with_the_same_result(people_model: object) -> None:
    from gyre.models import Model

    assert isinstance(people_model, Model)
    frame = people_model.input_example
    records = frame.to_dict("records")
    expected = people_model.predict(frame)
    np.testing.assert_array_equal(people_model.predict(records), expected)
    np.testing.assert_array_equal(people_model.predict(frame.to_numpy()), expected)
    np.testing.assert_array_equal(people_model.predict(frame.to_dict("list")), expected)
    shuffled = frame[["city", "income", "age", "visits"]]
    np.testing.assert_array_equal(people_model.predict(shuffled), expected)


def test_predict_raises_schema_mismatch_not_a_library_error(people_model: object) -> None:
    from gyre.models import Model

    assert isinstance(people_model, Model)
    row = {"age": "abc", "visits": 1, "city": "oslo", "income": 1.0}
    with pytest.raises(
        SchemaMismatch, match="column 'age' expects float64, got string 'abc' at row 0"
    ):
        people_model.predict([row])
    with pytest.raises(SchemaMismatch, match="column 'city' is missing"):
        people_model.predict_proba([{"age": 1.0, "visits": 1, "income": 1.0}])
    with pytest.raises(SchemaMismatch, match="input has no rows"):
        people_model.predict([])


def test_saving_checks_the_input_example_against_an_explicit_signature(tmp_path: Path) -> None:
    model, frame = m.sklearn_pipeline()
    with pytest.raises(SchemaMismatch, match="column 'age' has a missing value at row 0"):
        save_model(
            model,
            tmp_path / "p",
            signature=PEOPLE,
            input_example=frame.head(3).assign(age=np.nan),
        )

"""Reference profiles: what they summarise, and that windows merge into exact totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gyre.errors import InvalidArgument
from gyre.models import ReferenceProfile, merge_profiles, profile_frame
from gyre.models._profile import OTHER, CategoricalProfile, NumericProfile


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 3, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "k": rng.integers(0, 5, n),
            "city": rng.choice(["oslo", "rome", "lima", None], n),
        }
    )


def _numeric(profile: ReferenceProfile, name: str) -> NumericProfile:
    col = profile.columns[name]
    assert isinstance(col, NumericProfile)
    return col


def test_numeric_columns_get_counts_moments_and_quantile_bins() -> None:
    frame = _frame(1000, 0)
    x = _numeric(profile_frame(frame), "x")
    values = frame["x"].dropna().to_numpy()
    assert (x.count, x.missing) == (values.size, 1000 - values.size)
    assert x.min == values.min() and x.max == values.max()
    assert x.mean == pytest.approx(values.mean(), rel=1e-12)
    assert x.variance == pytest.approx(values.var(), rel=1e-12)
    assert len(x.edges) == 19 and x.edges == sorted(set(x.edges))
    assert len(x.counts) == 20 and sum(x.counts) == x.count
    assert max(x.counts) - min(x.counts) <= 2  # quantile bins hold about the same count


def test_bin_edges_are_deduplicated_for_discrete_columns() -> None:
    k = _numeric(profile_frame(_frame(1000, 0)), "k")  # ints 0..4
    assert k.edges == [0.0, 1.0, 2.0, 3.0, 4.0]  # one bin per value, plus "below 0"
    assert k.counts[0] == 0 and sum(k.counts) == 1000


def test_categorical_columns_keep_the_top_categories_and_an_other_bucket() -> None:
    values = [f"c{i:03d}" for i in range(150) for _ in range(i + 1)] + [None] * 7
    col = profile_frame({"cat": values}).columns["cat"]
    assert isinstance(col, CategoricalProfile)
    assert col.missing == 7 and col.count == len(values) - 7
    assert (
        len(col.frequencies) == 101 and "c149" in col.frequencies and "c000" not in col.frequencies
    )
    assert col.frequencies[OTHER] == sum(i + 1 for i in range(50))
    assert sum(col.frequencies.values()) == col.count


def test_arrays_are_profiled_with_positional_column_names() -> None:
    profile = profile_frame(np.arange(12.0).reshape(6, 2))
    assert list(profile.columns) == ["0", "1"] and profile.rows == 6


def test_infinities_count_as_missing() -> None:
    x = _numeric(profile_frame({"x": [1.0, np.inf, -np.inf, 3.0]}), "x")
    assert (x.count, x.missing, x.mean) == (2, 2, 2.0)


def test_a_window_profiled_like_the_reference_uses_its_edges_and_categories() -> None:
    ref = profile_frame(_frame(1000, 0))
    window = profile_frame(
        pd.DataFrame({"x": [-100.0, 100.0], "city": ["oslo", "paris"]}), like=ref
    )
    x = _numeric(window, "x")
    assert x.edges == _numeric(ref, "x").edges
    assert x.counts[0] == 1 and x.counts[-1] == 1  # outside the reference's range: end bins
    city = window.columns["city"]
    assert isinstance(city, CategoricalProfile) and city.frequencies[OTHER] == 1
    k = _numeric(window, "k")  # absent from the window: all missing
    assert (k.count, k.missing) == (0, 2)


def test_merged_windows_equal_the_profile_of_their_concatenation() -> None:
    ref = profile_frame(_frame(2000, 0))
    hours = [_frame(50 + 10 * i, seed=100 + i) for i in range(24)]
    merged = merge_profiles(*(profile_frame(h, like=ref) for h in hours))
    day = profile_frame(pd.concat(hours, ignore_index=True), like=ref)
    assert merged.rows == day.rows
    for name, expected in day.columns.items():
        got = merged.columns[name]
        assert (got.count, got.missing) == (expected.count, expected.missing)
        if isinstance(expected, NumericProfile):
            assert isinstance(got, NumericProfile)
            assert got.counts == expected.counts and got.edges == expected.edges
            assert (got.min, got.max) == (expected.min, expected.max)
            assert got.mean == pytest.approx(expected.mean, rel=1e-9, abs=1e-9)
            assert got.variance == pytest.approx(expected.variance, rel=1e-9, abs=1e-9)
        else:
            assert isinstance(got, CategoricalProfile) and isinstance(expected, CategoricalProfile)
            assert got.frequencies == expected.frequencies


def test_merging_with_an_empty_window_changes_nothing_but_missing_counts() -> None:
    ref = profile_frame(_frame(500, 0))
    full = profile_frame(_frame(100, 1), like=ref)
    empty = profile_frame(pd.DataFrame({"x": [np.nan]}), like=ref)
    merged = full.merge(empty)
    assert _numeric(merged, "x").mean == _numeric(full, "x").mean
    assert _numeric(merged, "x").missing == _numeric(full, "x").missing + 1


def test_profiles_with_different_edges_refuse_to_merge() -> None:
    a, b = profile_frame(_frame(100, 1)), profile_frame(_frame(100, 2))
    with pytest.raises(InvalidArgument, match="column 'x' has different bin edges") as info:
        merge_profiles(a, b)
    assert info.value.hint and "like=reference" in info.value.hint


def test_a_profile_round_trips_through_its_json_file(tmp_path: Path) -> None:
    profile = profile_frame(_frame(300, 3))
    profile.save(tmp_path / "p.json")
    assert ReferenceProfile.load(tmp_path / "p.json") == profile

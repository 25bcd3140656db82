"""The filter language: what parses, and errors that point at the offending token."""

from __future__ import annotations

import pytest

from gyre.errors import InvalidFilter
from gyre.store.filter import And, Comparison, Or, OrderTerm, parse_filter, parse_order_by


def test_the_documented_example_parses() -> None:
    node = parse_filter("metrics.rmse < 0.3 and params.model = 'rf' and tags.team = 'x'")
    assert node == And(
        (
            Comparison("metric", "rmse", "<", 0.3),
            Comparison("param", "model", "=", "rf"),
            Comparison("tag", "team", "=", "x"),
        )
    )


def test_or_parentheses_in_like_and_quoted_keys() -> None:
    node = parse_filter(
        "(status = 'FINISHED' OR status = 'RUNNING') and metrics.`val loss` <= 1e-2 "
        "and params.depth NOT IN ('4', '8') and tags.\"a.b\" ILIKE 'X%'"
    )
    assert isinstance(node, And)
    assert isinstance(node.parts[0], Or)
    assert node.parts[1] == Comparison("metric", "val loss", "<=", 0.01)
    assert node.parts[2] == Comparison("param", "depth", "NOT IN", ("4", "8"))
    assert node.parts[3] == Comparison("tag", "a.b", "ILIKE", "X%")


def test_dotted_keys_and_attribute_aliases() -> None:
    assert parse_filter("tags.gyre.source.git.dirty = 'true'") == Comparison(
        "tag", "gyre.source.git.dirty", "=", "true"
    )
    assert parse_filter("run_name = 'x'") == Comparison("attribute", "name", "=", "x")
    assert parse_filter("attributes.start_time > 5") == Comparison(
        "attribute", "start_time", ">", 5.0
    )
    assert parse_filter("   ") is None


@pytest.mark.parametrize(
    ("text", "needle", "position"),
    [
        ("metrics.rmse ~ 0.3", "'~'", 14),
        ("metrics.rmse < 'low'", "'low'", 16),
        ("params.model < 'rf'", "operator <", 14),
        ("metrics.rmse < 0.3 and", "the end", 23),
        ("bogus = 1", "'bogus'", 1),
        ("(metrics.a < 1", "missing ')'", 15),
        ("metrics.a < 1 metrics.b < 2", "'metrics.b'", 15),
        ("params.x IN 'a'", "parenthesised", 13),
    ],
)
def test_errors_point_at_the_offending_token(text: str, needle: str, position: int) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(text)
    message = str(info.value)
    assert needle in message
    assert f"position {position}" in message
    assert text in message, "the whole filter is quoted"


def test_order_by_terms() -> None:
    assert parse_order_by(["metrics.rmse", "params.model DESC", "start_time asc"]) == [
        OrderTerm("metric", "rmse", True),
        OrderTerm("param", "model", False),
        OrderTerm("attribute", "start_time", True),
    ]
    with pytest.raises(InvalidFilter, match="'sideways'"):
        parse_order_by(["metrics.rmse sideways"])

"""The run filter language, parsed into a small tree that stores compile to SQL.

Examples::

    metrics.rmse < 0.3 and params.model = 'rf' and tags.team = 'x'
    (status = 'FINISHED' or status = 'RUNNING') and name LIKE 'tune-%'
    params.depth IN ('4', '8') and metrics.`val loss` <= 1e-2

Identifiers are ``metrics.<key>``, ``params.<key>``, ``tags.<key>`` (keys may contain dots,
or be quoted with backticks or double quotes) and run attributes (``run_id``, ``name``,
``status``, ``start_time``, ``end_time``, ``parent_run_id``, optionally written
``attributes.<name>``). Comparisons: ``= != < <= > >=`` for metrics and numeric attributes,
``= != LIKE ILIKE IN NOT IN`` for params, tags and text attributes. ``and`` / ``or`` /
parentheses combine them; keywords are case-insensitive.

Order-by terms: ``metrics.rmse``, ``params.model DESC``, ``start_time ASC``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gyre.errors import InvalidFilter

__all__ = ["And", "Comparison", "Node", "Or", "OrderTerm", "parse_filter", "parse_order_by"]

Kind = Literal["metric", "param", "tag", "attribute"]

NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
TEXT_ATTRIBUTES = frozenset({"run_id", "name", "status", "parent_run_id"})
_ATTRIBUTE_ALIASES = {"run_name": "name", "id": "run_id"}
_PREFIXES: dict[str, Kind] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_TEXT_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_SYNTAX_HINT = "example: metrics.rmse < 0.3 and params.model = 'rf' and tags.team = 'x'"


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: Kind
    key: str
    op: str
    value: float | str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Node, ...]


Node = Comparison | And | Or


@dataclass(frozen=True, slots=True)
class OrderTerm:
    kind: Kind
    key: str
    ascending: bool


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][\w\-]*(?:\.[\w\-]+)*(?:\.(?:`[^`]+`|"[^"]+"))?|`[^`]+`)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _error(text: str, pos: int, what: str) -> InvalidFilter:
    near = text[pos : pos + 20] or "<end of filter>"
    return InvalidFilter(
        f"invalid filter {text!r}: {what} at position {pos + 1} (near {near!r})",
        hint=_SYNTAX_HINT,
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def advance(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.tok
        if tok.kind == "ident" and tok.text.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise _error(self.text, self.tok.pos, f"unexpected {self.tok.text!r}; expected AND/OR")
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.keyword("OR"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.atom()]
        while self.keyword("AND"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def atom(self) -> Node:
        if self.tok.kind == "lparen":
            self.advance()
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise _error(self.text, self.tok.pos, "missing ')'")
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        tok = self.advance()
        if tok.kind != "ident":
            raise _error(
                self.text,
                tok.pos,
                f"expected metrics.<key>, params.<key>, tags.<key> or an "
                f"attribute, got {tok.text or 'the end'!r}",
            )
        kind, key = _identifier(self.text, tok)
        op_tok = self.tok
        op = self.operator()
        numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
        allowed = _NUMERIC_OPS if numeric else _TEXT_OPS
        if op not in allowed:
            raise _error(
                self.text,
                op_tok.pos,
                f"operator {op} does not apply to {tok.text} (use one of "
                f"{', '.join(sorted(allowed))})",
            )
        value: float | str | tuple[str, ...]
        if op in ("IN", "NOT IN"):
            value = self.string_list()
        else:
            vtok = self.advance()
            if numeric:
                if vtok.kind != "number":
                    raise _error(
                        self.text,
                        vtok.pos,
                        f"{tok.text} compares with a number, got {vtok.text or 'the end'!r}",
                    )
                value = float(vtok.text)
            else:
                if vtok.kind != "string":
                    raise _error(
                        self.text,
                        vtok.pos,
                        f"{tok.text} compares with a quoted string, got {vtok.text or 'the end'!r}",
                    )
                value = _unquote(vtok.text)
        return Comparison(kind, key, op, value)

    def operator(self) -> str:
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            return {"==": "=", "<>": "!="}.get(tok.text, tok.text)
        if tok.kind == "ident":
            word = tok.text.upper()
            if word in ("LIKE", "ILIKE", "IN"):
                self.advance()
                return word
            if word == "NOT":
                self.advance()
                if self.keyword("IN"):
                    return "NOT IN"
        raise _error(
            self.text,
            tok.pos,
            f"expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN), "
            f"got {tok.text or 'the end'!r}",
        )

    def string_list(self) -> tuple[str, ...]:
        if self.tok.kind != "lparen":
            raise _error(self.text, self.tok.pos, "IN takes a parenthesised list of strings")
        self.advance()
        items: list[str] = []
        while True:
            vtok = self.advance()
            if vtok.kind != "string":
                raise _error(self.text, vtok.pos, f"expected a quoted string, got {vtok.text!r}")
            items.append(_unquote(vtok.text))
            sep = self.advance()
            if sep.kind == "rparen":
                return tuple(items)
            if sep.kind != "comma":
                raise _error(self.text, sep.pos, "expected ',' or ')'")


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def _identifier(text: str, tok: _Tok) -> tuple[Kind, str]:
    raw = tok.text
    head, dot, rest = raw.partition(".")
    kind = _PREFIXES.get(head.lower()) if dot else None
    if kind is None:
        name = raw.strip("`")
        name = _ATTRIBUTE_ALIASES.get(name.lower(), name.lower())
        if name in NUMERIC_ATTRIBUTES or name in TEXT_ATTRIBUTES:
            return "attribute", name
        raise _error(
            text,
            tok.pos,
            f"unknown identifier {raw!r}: use metrics.<key>, params.<key>, tags.<key> or one of "
            f"{', '.join(sorted(NUMERIC_ATTRIBUTES | TEXT_ATTRIBUTES))}",
        )
    key = rest
    if len(key) >= 2 and key[0] in '`"' and key[-1] == key[0]:
        key = key[1:-1]
    if not key:
        raise _error(text, tok.pos, f"{raw!r} names no key")
    if kind == "attribute":
        key = _ATTRIBUTE_ALIASES.get(key.lower(), key.lower())
        if key not in NUMERIC_ATTRIBUTES and key not in TEXT_ATTRIBUTES:
            raise _error(text, tok.pos, f"unknown attribute {key!r}")
    return kind, key


def parse_filter(text: str) -> Node | None:
    """Parse a filter; None for an empty one. InvalidFilter points at the bad token."""
    if not text or not text.strip():
        return None
    return _Parser(text).parse()


def parse_order_by(terms: list[str] | tuple[str, ...]) -> list[OrderTerm]:
    """Parse ``["metrics.rmse ASC", "start_time DESC"]``; ascending is the default."""
    out: list[OrderTerm] = []
    for term in terms:
        tokens = _tokenize(term)
        if tokens[0].kind != "ident":
            raise _error(term, tokens[0].pos, "expected an identifier to order by")
        kind, key = _identifier(term, tokens[0])
        ascending = True
        nxt = tokens[1]
        if nxt.kind == "ident" and nxt.text.upper() in ("ASC", "DESC"):
            ascending = nxt.text.upper() == "ASC"
            nxt = tokens[2]
        if nxt.kind != "end":
            raise _error(term, nxt.pos, f"unexpected {nxt.text!r}; expected ASC or DESC")
        out.append(OrderTerm(kind, key, ascending))
    return out

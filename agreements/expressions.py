"""A small, closed filter language compiled to polars expressions (never ``eval``).

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | cmp
    cmp    := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                   | "in" list | "not" "in" list | "is" ["not"] "null"]
    sum    := term (("+" | "-") term)*
    term   := atom (("*" | "/") atom)*
    atom   := FIELD | STRING | NUMBER | "true" | "false" | "(" expr ")"
    list   := "[" literal ("," literal)* "]"

Fields must belong to the dataset; a bare boolean field means ``field == true``. Identifier
fields cannot be filtered on (they are linkage tokens, not values).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from core.errors import InvalidInput
from policy.vocabulary import FieldRole


class InvalidExpression(InvalidInput):
    kind = "invalid-expression"
    title = "The filter expression is invalid"


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\+|-|\*|/)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
MAX_LENGTH = 2000
# The parser recurses once a parenthesis and once a prefix operator ("not", "-"), and polars
# expressions nest as deep as the tree: both are bounded before parsing starts.
MAX_DEPTH = 32
MAX_TOKENS = 400


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: str


def tokens(text: str) -> list[_Tok]:
    """The tokens of a filter (a bounded, linear scan)."""
    if len(text) > MAX_LENGTH:
        raise InvalidExpression(f"The filter is longer than {MAX_LENGTH} characters.")
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidExpression(f"Unexpected character at position {pos + 1} of the filter.")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        out.append(_Tok(kind, value))
        pos = m.end()
    _check_nesting(out)
    return out


def _check_nesting(toks: list[_Tok]) -> None:
    """Refuse, in one pass, a filter too long or nested too deeply for the recursive parser."""
    if len(toks) > MAX_TOKENS:
        raise InvalidExpression(f"The filter has more than {MAX_TOKENS} tokens.")
    depth = prefix = 0
    for tok in toks:
        if tok.value in ("(", "["):
            depth += 1
        elif tok.value in (")", "]"):
            depth -= 1
        # Consecutive prefix operators nest as deep as parentheses do.
        prefix = prefix + 1 if tok.value in ("not", "-") else 0
        if depth + prefix > MAX_DEPTH:
            raise InvalidExpression(f"The filter nests deeper than {MAX_DEPTH} levels.")


class _Parser:
    def __init__(self, text: str, fields: dict[str, str]) -> None:
        self.toks = tokens(text)
        self.i = 0
        self.fields = fields
        self.used: set[str] = set()

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, value: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind) or (value and tok.value != value):
            want = value or kind or "more input"
            raise InvalidExpression(f"Expected {want} in the filter.")
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.value == value and tok.kind in ("kw", "op"):
            self.i += 1
            return True
        return False

    def parse(self) -> pl.Expr:
        expr = self.or_()
        if self.peek() is not None:
            raise InvalidExpression("Unexpected input after the end of the filter.")
        return self._bool(expr)

    @staticmethod
    def _bool(node: tuple[pl.Expr, str | None]) -> pl.Expr:
        expr, kind = node
        if kind == "bool":
            return expr
        if kind == "boolean":
            return expr.eq(True)
        raise InvalidExpression("The filter must be a condition, not a value.")

    def or_(self) -> tuple[pl.Expr, str | None]:
        node = self.and_()
        while self.accept("or"):
            node = (self._bool(node) | self._bool(self.and_()), "bool")
        return node

    def and_(self) -> tuple[pl.Expr, str | None]:
        node = self.not_()
        while self.accept("and"):
            node = (self._bool(node) & self._bool(self.not_()), "bool")
        return node

    def not_(self) -> tuple[pl.Expr, str | None]:
        if self.accept("not"):
            return ~self._bool(self.not_()), "bool"
        return self.cmp()

    def literal(self) -> Any:
        tok = self.take()
        if tok.kind == "op" and tok.value == "-":
            value = self.literal()
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidExpression("Only a number can be negated in the filter.")
            return -value
        if tok.kind == "num":
            return float(tok.value) if "." in tok.value else int(tok.value)
        if tok.kind == "str":
            return bytes(tok.value[1:-1], "utf-8").decode("unicode_escape")
        if tok.kind == "kw" and tok.value in ("true", "false"):
            return tok.value == "true"
        raise InvalidExpression("Expected a literal value in the filter.")

    def atom(self) -> tuple[pl.Expr, str | None]:
        tok = self.peek()
        if tok is None:
            raise InvalidExpression("The filter ends too early.")
        if tok.kind == "op" and tok.value == "(":
            self.i += 1
            node = self.or_()
            self.take("op", ")")
            return node
        if tok.kind == "name":
            self.i += 1
            ftype = self.fields.get(tok.value)
            if ftype is None:
                raise InvalidExpression(f"The filter names an unknown field '{tok.value}'.")
            if ftype == "identifier":
                raise InvalidExpression(f"The filter cannot use identifier field '{tok.value}'.")
            self.used.add(tok.value)
            return pl.col(tok.value), ftype
        value = self.literal()
        return pl.lit(value), "boolean" if isinstance(value, bool) else "literal"

    def sum_(self) -> tuple[pl.Expr, str | None]:
        left, ltype = self.term()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.value in ("+", "-"):
            self.i += 1
            right, _ = self.term()
            left, ltype = (left + right if tok.value == "+" else left - right), "number"
        return left, ltype

    def term(self) -> tuple[pl.Expr, str | None]:
        left, ltype = self.unary()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.value in ("*", "/"):
            self.i += 1
            right, _ = self.unary()
            left, ltype = (left * right if tok.value == "*" else left / right), "number"
        return left, ltype

    def unary(self) -> tuple[pl.Expr, str | None]:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.value == "-":
            self.i += 1
            expr, _ = self.unary()
            return -expr, "number"
        return self.atom()

    def cmp(self) -> tuple[pl.Expr, str | None]:
        left, ltype = self.sum_()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.value in ("==", "!=", "<", "<=", ">", ">="):
            self.i += 1
            right, _ = self.sum_()
            ops = {
                "==": left.eq,
                "!=": left.ne,
                "<": left.lt,
                "<=": left.le,
                ">": left.gt,
                ">=": left.ge,
            }
            return ops[tok.value](right), "bool"
        negate = False
        if tok is not None and tok.value == "not" and self._next_is("in"):
            self.i += 1
            negate = True
            tok = self.peek()
        if tok is not None and tok.value == "in":
            self.i += 1
            self.take("op", "[")
            values = [self.literal()]
            while self.accept(","):
                values.append(self.literal())
            self.take("op", "]")
            expr = left.is_in(values)
            return (~expr if negate else expr), "bool"
        if tok is not None and tok.value == "is":
            self.i += 1
            is_not = self.accept("not")
            self.take("kw", "null")
            return (left.is_not_null() if is_not else left.is_null()), "bool"
        return left, ltype

    def _next_is(self, value: str) -> bool:
        return self.i + 1 < len(self.toks) and self.toks[self.i + 1].value == value


@dataclass(frozen=True)
class CompiledFilter:
    expression: pl.Expr
    fields: frozenset[str]


def compile_filter(text: str | None, fields: Iterable[tuple[str, str, str]]) -> CompiledFilter:
    """Compile ``text`` against (name, type, role) field triples; ``None`` or blank means all."""
    known = {
        name: ("identifier" if role == FieldRole.IDENTIFIER else ftype)
        for name, ftype, role in fields
    }
    if text is None or not text.strip():
        return CompiledFilter(pl.lit(True), frozenset())
    parser = _Parser(text, known)
    expr = parser.parse()
    return CompiledFilter(expr.fill_null(False), frozenset(parser.used))

"""Code expressions for the quote bank: ``ts.trust AND NOT (ts.trust_lacking OR ts.time)``.

AND, OR and NOT (any case) over code ids, with parentheses; NOT binds tightest, then AND, then
OR. An expression is parsed once into a small tree and evaluated against each unit's set of codes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from pipeline.report.errors import ReportError

TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z0-9_.:-]+)|(\S))")
KEYWORDS = ("AND", "OR", "NOT")
# Far beyond any query a person writes; a request or script cannot make parsing or matching
# recurse until Python gives up (a RecursionError, HTTP 500 on the review page).
MAX_LENGTH = 2000
MAX_DEPTH = 25


@dataclass(frozen=True)
class Expr:
    """A parsed expression: ``op`` is ``code``, ``not``, ``and`` or ``or``."""

    op: str
    code: str = ""
    args: tuple[Expr, ...] = ()

    def matches(self, codes: set[str] | frozenset[str]) -> bool:
        if self.op == "code":
            return self.code in codes
        if self.op == "not":
            return not self.args[0].matches(codes)
        if self.op == "and":
            return all(a.matches(codes) for a in self.args)
        return any(a.matches(codes) for a in self.args)

    @property
    def codes(self) -> list[str]:
        """Every code named, in order of appearance."""
        if self.op == "code":
            return [self.code]
        return list(dict.fromkeys(c for a in self.args for c in a.codes))

    @property
    def positive_codes(self) -> list[str]:
        """Codes a matching unit may hold because of the expression (not negated)."""
        return self._polar(True)

    def _polar(self, positive: bool) -> list[str]:
        if self.op == "code":
            return [self.code] if positive else []
        if self.op == "not":
            return self.args[0]._polar(not positive)
        return list(dict.fromkeys(c for a in self.args for c in a._polar(positive)))

    def __str__(self) -> str:
        if self.op == "code":
            return self.code
        if self.op == "not":
            inner = str(self.args[0])
            return f"NOT {inner}" if self.args[0].op in ("code", "not") else f"NOT ({inner})"
        joined = f" {self.op.upper()} ".join(
            str(a) if a.op in ("code", "not") or a.op == self.op else f"({a})" for a in self.args
        )
        return joined


def any_of(codes: list[str]) -> Expr:
    items = tuple(Expr("code", c) for c in dict.fromkeys(codes))
    return items[0] if len(items) == 1 else Expr("or", args=items)


def both(left: Expr | None, right: Expr | None) -> Expr | None:
    if left is None or right is None:
        return left or right
    return Expr("and", args=(left, right))


class _Parser:
    def __init__(self, text: str, known: list[str]):
        if len(text) > MAX_LENGTH:
            raise ReportError(
                f"the code expression is {len(text):,} characters long; write one of at most "
                f"{MAX_LENGTH:,} (name a group of codes with OR instead of repeating them)"
            )
        self.text, self.known, self.depth = text, known, 0
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        position = 0
        for match in TOKEN.finditer(text):
            open_, close, word, other = match.groups()
            at = match.start(match.lastindex or 0)
            if other:
                raise self.error(f"unexpected {other!r}", at)
            if open_ or close:
                self.tokens.append(("(" if open_ else ")", "", at))
            elif word.upper() in KEYWORDS:
                self.tokens.append((word.upper(), "", at))
            else:
                self.tokens.append(("code", word, at))
            position = match.end()
        if text[position:].strip():
            raise self.error("unexpected text", position)
        self.index = 0

    def error(self, problem: str, at: int) -> ReportError:
        return ReportError(
            f"code expression {self.text!r}, character {at + 1}: {problem}. Write codes joined "
            "by AND, OR, NOT and parentheses, e.g. 'ts.trust AND NOT ts.trust_lacking'"
        )

    def peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Expr:
        if not self.tokens:
            raise ReportError("the code expression is empty: name at least one code")
        expr = self.parse_or()
        if self.peek() is not None:
            kind, value, at = self.take()
            raise self.error(f"unexpected {value or kind!r}", at)
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.peek() == "OR":
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Expr("or", args=tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_not()]
        while self.peek() == "AND":
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else Expr("and", args=tuple(items))

    def deeper(self, at: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"nested more than {MAX_DEPTH} levels deep (parentheses and NOTs); remove "
                "some of them",
                at,
            )

    def parse_not(self) -> Expr:
        if self.peek() == "NOT":
            self.deeper(self.take()[2])
            inner = self.parse_not()
            self.depth -= 1
            return Expr("not", args=(inner,))
        return self.parse_atom()

    def parse_atom(self) -> Expr:
        if self.peek() is None:
            raise self.error("the expression ends too early", len(self.text))
        kind, value, at = self.take()
        if kind == "(":
            self.deeper(at)
            inner = self.parse_or()
            if self.peek() != ")":
                raise self.error("a '(' is never closed", at)
            self.take()
            self.depth -= 1
            return inner
        if kind == "code":
            check_code(value, self.known, f"code expression {self.text!r}")
            return Expr("code", value)
        raise self.error(f"expected a code or '(' but found {kind!r}", at)


def check_code(code: str, known: list[str], where: str) -> None:
    if code in known:
        return
    close = difflib.get_close_matches(code, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else " (qcode validate-codebook lists them)"
    raise ReportError(f"{where}: unknown code {code!r}{hint}")


def parse_expression(text: str, known: list[str]) -> Expr:
    """Parse ``text`` against the codebook's ids; a ``ReportError`` names what is wrong where."""
    return _Parser(text, known).parse()

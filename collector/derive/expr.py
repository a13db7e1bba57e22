"""Conditions of machine-state rules: a small, safe language over one machine's tag names.

`compile_condition("motor_current > 1 or amber", tags)` checks a rule against the machine's tags
once and returns a `Condition`, nested closures cheap enough to run on every reading. The text is
tokenized and parsed by this grammar, never handed to Python:

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand (("<" | "<=" | ">" | ">=" | "==" | "!=") operand)?
    operand    := number | text | "true" | "false" | name | "(" or_expr ")"
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias

from collector.model import Value

TagKind: TypeAlias = Literal["number", "bool", "text"] | None
_Test: TypeAlias = Callable[[Mapping[str, Value], "str | None"], bool]
_Getter: TypeAlias = Callable[[Mapping[str, Value], "str | None"], Value]

STATES = ("running", "idle", "stopped", "offline")
KEYWORDS = ("and", "or", "not", "true", "false")
MAX_NESTING = 32  # parentheses and 'not's inside each other; keeps the parser off Python's stack limit

_ORDERING = ("<", "<=", ">", ">=")
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"-?[A-Za-z0-9_.]*")
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
# What people write out of habit from other languages, and how this one spells it.
_HINTS = {
    "&&": "use 'and' instead of '&&'", "||": "use 'or' instead of '||'",
    "=>": "use '>=' instead of '=>'", "=<": "use '<=' instead of '=<'",
    "<>": "use '!=' instead of '<>'", "&": "use 'and' instead of '&'", "|": "use 'or' instead of '|'",
    "!": "use 'not' instead of '!'", "=": "use '==' to compare",
    "≥": "use '>=' instead of '≥'", "≤": "use '<=' instead of '≤'", "≠": "use '!=' instead of '≠'",
    "“": "use straight quotes \" or ' around text", "”": "use straight quotes \" or ' around text",
    "‘": "use straight quotes \" or ' around text", "’": "use straight quotes \" or ' around text",
    "-": "'-' must be directly followed by a number: conditions have no arithmetic",
    "+": "conditions have no arithmetic: '+' is not allowed",
    "*": "conditions have no arithmetic: '*' is not allowed",
    "/": "conditions have no arithmetic: '/' is not allowed",
    "%": "conditions have no arithmetic: '%' is not allowed",
}
_NUMBERS = frozenset((int, float))
_COMPARABLE = {int: 1, float: 1, bool: 1, str: 2}  # classes that may be equal to each other


class ExprError(ValueError):
    """A rule that cannot be compiled; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column

    def __reduce__(self) -> tuple[type[ExprError], tuple[str, int]]:
        return ExprError, (self.message, self.column)


class Condition:
    """A compiled rule condition: call it with the newest good values of the machine's tags."""

    __slots__ = ("text", "tags", "uses_state", "constant", "_names", "_test")

    def __init__(self, text: str, tags: frozenset[str], uses_state: bool, test: _Test | bool) -> None:
        self.text = text
        self.tags = tags
        self.uses_state = uses_state
        self.constant: bool | None = None
        if isinstance(test, bool):
            if not tags and not uses_state:
                self.constant = test
            test = _always(test)
        self._names = tuple(sorted(tags))
        self._test: _Test = test

    def __call__(self, values: Mapping[str, Value], state: str | None = None) -> bool:
        """True when the condition holds. `values` maps tag name -> value of that tag's newest
        good reading; a tag absent from `values` has no good reading, and then the whole
        condition is False (CONTRACT: a tag without a good reading makes its rule fail)."""
        for name in self._names:
            if name not in values:
                return False
        return self._test(values, state)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def compile_condition(text: str, tags: Mapping[str, TagKind]) -> Condition:
    """Parse `text`; `tags` are the machine's tag names with what is known of their types."""
    parser = _Parser(text, tags)
    node = parser.parse()
    return Condition(text, frozenset(parser.read), parser.uses_state, _compile_truth(node))


# --- tokens ---------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "value", "name", "op", "and", "or", "not", "(", ")", "end" or "error"
    value: Value | ExprError
    column: int  # 1-based, of the token's first character
    end: int  # offset just past the token, for quoting the source


def _tokenize(text: str, tags: Mapping[str, TagKind]) -> list[_Token]:
    """The tokens of `text`; the first malformed one ends the list as an "error" token, so that
    the parser reports problems left to right."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch, col = text[i], i + 1
        if ch.isspace():
            i += 1
            continue
        number = _NUMBER.match(text, i)
        if number:
            word = _WORD.match(text, i)
            assert word is not None  # the pattern matches the empty string
            if word.end() > number.end():
                return tokens + [_error(_bad_number(word.group(), tags), col)]
            source = number.group()
            plain = source.lstrip("-").isdigit()
            tokens.append(_Token("value", int(source) if plain else float(source), col, number.end()))
            i = number.end()
        elif name := _NAME.match(text, i):
            word_ = name.group()
            if word_ in ("true", "false"):
                tokens.append(_Token("value", word_ == "true", col, name.end()))
            elif word_ in KEYWORDS:
                tokens.append(_Token(word_, word_, col, name.end()))
            elif word_.lower() in KEYWORDS:
                return tokens + [_error(f"use '{word_.lower()}' instead of '{word_}'", col)]
            else:
                tokens.append(_Token("name", word_, col, name.end()))
            i = name.end()
        elif ch in "\"'":
            try:
                end, value = _read_text(text, i)
            except ExprError as exc:
                return tokens + [_Token("error", exc, exc.column, exc.column)]
            tokens.append(_Token("value", value, col, end))
            i = end
        elif ch in "()":
            tokens.append(_Token(ch, ch, col, i + 1))
            i += 1
        else:
            for piece in (text[i:i + 2], ch):  # the longest that means something
                if piece in _OPERATORS:
                    tokens.append(_Token("op", piece, col, i + len(piece)))
                    i += len(piece)
                    break
                if piece in _HINTS:
                    return tokens + [_error(_HINTS[piece], col)]
            else:
                return tokens + [_error(f"unexpected character {ch!r}", col)]
    tokens.append(_Token("end", None, n + 1, n))
    return tokens


def _error(message: str, column: int) -> _Token:
    return _Token("error", ExprError(message, column), column, column)


def _bad_number(word: str, tags: Mapping[str, TagKind]) -> str:
    if word in tags:
        return (f"tag '{word}' starts with a digit, which conditions cannot read: names in "
                "conditions start with a letter or '_'")
    return f"'{word}' is not a number, and names start with a letter or '_'"


def _read_text(text: str, start: int) -> tuple[int, str]:
    """The end offset and value of the quoted text opening at `start`."""
    quote, i = text[start], start + 1
    chars: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return i + 1, "".join(chars)
        if ch == "\\" and i + 1 < len(text):
            escaped = text[i + 1]
            if escaped not in "\\\"'":
                raise ExprError(f"unknown escape '\\{escaped}' in text: only \\\\, \\\" and \\' "
                                "are allowed", i + 1)
            chars.append(escaped)
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise ExprError(f"text opened with {quote} is not closed", start + 1)


# --- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Value
    column: int
    source: str

    @property
    def kind(self) -> TagKind:
        if isinstance(self.value, bool):
            return "bool"
        return "text" if isinstance(self.value, str) else "number"

    def describe(self) -> str:
        if isinstance(self.value, str):
            return 'text "' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return self.source if isinstance(self.value, bool) else f"number {self.source}"


@dataclass(frozen=True, slots=True)
class _Tag:
    name: str
    kind: TagKind
    column: int

    def describe(self) -> str:
        return f"{self.kind or 'the'} tag '{self.name}'"


@dataclass(frozen=True, slots=True)
class _State:
    column: int
    kind: TagKind = "text"

    def describe(self) -> str:
        return "the machine's state"


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str  # "and", "or" or "not" (one argument)
    args: tuple[_Node, ...]
    kind: TagKind = "bool"

    def describe(self) -> str:
        return "a true/false condition"


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str
    left: _Node
    right: _Node
    kind: TagKind = "bool"

    def describe(self) -> str:
        return "a true/false condition"


_Node: TypeAlias = "_Literal | _Tag | _State | _Logic | _Compare"


# --- parser ---------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens, checking names and kinds as it goes."""

    def __init__(self, text: str, tags: Mapping[str, TagKind]) -> None:
        self.text = text
        self.tags = tags
        self.tokens = _tokenize(text, tags)
        self.pos = 0
        self.depth = 0
        self.read: set[str] = set()
        self.uses_state = False

    def parse(self) -> _Node:
        if self._peek().kind == "end":
            raise ExprError("the condition is empty", 1)
        node = self._or()
        self._end_of("end")
        return self._truth(node)

    def _peek(self) -> _Token:
        token = self.tokens[self.pos]
        if isinstance(token.value, ExprError):
            raise token.value
        return token

    def _take(self) -> _Token:
        token = self._peek()
        self.pos += 1
        return token

    def _source(self, token: _Token) -> str:
        return self.text[token.column - 1:token.end]

    def _end_of(self, expected: str) -> None:
        """Check that the next token is `expected` (")" or "end"), with the reason if not."""
        token = self._peek()
        if token.kind == expected:
            return
        if token.kind == ")":
            raise ExprError("')' has no matching '('", token.column)
        previous = self.tokens[self.pos - 1]
        raise ExprError(f"'{self._source(token)}' cannot follow '{self._source(previous)}': "
                        "join conditions with 'and' or 'or'", token.column)

    def _or(self) -> _Node:
        args = [self._and()]
        while self._peek().kind == "or":
            self._truth(args[-1])
            self._take()
            args.append(self._truth(self._and()))
        return args[0] if len(args) == 1 else _Logic("or", tuple(args))

    def _and(self) -> _Node:
        args = [self._not()]
        while self._peek().kind == "and":
            self._truth(args[-1])
            self._take()
            args.append(self._truth(self._not()))
        return args[0] if len(args) == 1 else _Logic("and", tuple(args))

    def _not(self) -> _Node:
        token = self._peek()
        if token.kind != "not":
            return self._comparison()
        self._take()
        self._nest(token)
        node = _Logic("not", (self._truth(self._not()),))
        self.depth -= 1
        return node

    def _nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"more than {MAX_NESTING} parentheses or 'not's inside each other",
                            token.column)

    def _comparison(self) -> _Node:
        start = self.pos
        left = self._operand()
        op = self._peek()
        if op.kind != "op":
            return left
        self._take()
        middle = self.pos
        right = self._operand()
        following = self._peek()
        if following.kind == "op":
            raise ExprError(self._chained(start, middle, op, following), following.column)
        return self._compare(op, left, right)

    def _chained(self, start: int, middle: int, op: _Token, following: _Token) -> str:
        message = "comparisons cannot be chained: join them with 'and'"
        a = self.text[self.tokens[start].column - 1:self.tokens[middle - 2].end]
        b = self.text[self.tokens[middle].column - 1:self.tokens[self.pos - 1].end]
        self._take()
        try:
            third = self.pos
            self._operand()
        except ExprError:
            return message
        c = self.text[self.tokens[third].column - 1:self.tokens[self.pos - 1].end]
        return f"{message}, e.g. '{a} {op.value} {b} and {b} {following.value} {c}'"

    def _operand(self) -> _Node:
        token = self._take()
        if token.kind == "value":
            return _Literal(token.value, token.column, self._source(token))  # type: ignore[arg-type]
        if token.kind == "name":
            return self._name(str(token.value), token.column)
        if token.kind == "(":
            if self._peek().kind == ")":
                raise ExprError("nothing between '(' and ')'", token.column)
            self._nest(token)
            node = self._or()
            if self._peek().kind == "end":
                raise ExprError("'(' is not closed: add a ')'", token.column)
            self._end_of(")")
            self._take()
            self.depth -= 1
            return node
        previous = self.tokens[self.pos - 2] if self.pos >= 2 else None
        if token.kind == "end":
            assert previous is not None  # an empty condition is reported before parsing
            raise ExprError("the condition ends too early: something must follow "
                            f"'{self._source(previous)}'", previous.column)
        if previous is None:
            raise ExprError(f"a condition cannot start with '{self._source(token)}'", token.column)
        raise ExprError(f"expected a value after '{self._source(previous)}', "
                        f"found '{self._source(token)}'", token.column)

    def _name(self, name: str, column: int) -> _Node:
        if name in self.tags:
            self.read.add(name)
            return _Tag(name, self.tags[name], column)
        if name == "state":
            self.uses_state = True
            return _State(column)
        known = [*self.tags, *KEYWORDS, *(() if "state" in self.tags else ("state",))]
        close = [name.lower()] if name.lower() in known else difflib.get_close_matches(name, known, 1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ExprError(f"unknown tag '{name}'{hint}", column)

    def _truth(self, node: _Node) -> _Node:
        """`node`, checked to be usable as true/false: text is not."""
        if isinstance(node, _State):
            raise ExprError("'state' is the machine's state name, not true or false: compare it, "
                            'e.g. state == "running"', node.column)
        if isinstance(node, _Tag) and node.kind == "text":
            raise ExprError(f"text tag '{node.name}' is not true or false: compare it, "
                            f'e.g. {node.name} == "AUTO"', node.column)
        if isinstance(node, _Literal) and node.kind == "text":
            raise ExprError(f"{node.describe()} is not true or false", node.column)
        return node

    def _compare(self, op: _Token, left: _Node, right: _Node) -> _Node:
        """The comparison, when its operands' known kinds allow it."""
        symbol, column = str(op.value), op.column
        if isinstance(left, _State) or isinstance(right, _State):
            self._check_state(symbol, column, right if isinstance(left, _State) else left)
        elif symbol in _ORDERING:
            for side in (left, right):
                if side.kind == "text":
                    raise ExprError(f"'{symbol}' needs numbers on both sides, not "
                                    f"{side.describe()}: text can only be compared with == or !=",
                                    column)
                if side.kind == "bool":
                    raise ExprError(f"'{symbol}' needs numbers on both sides, not "
                                    f"{side.describe()}: true/false do not count as 1/0", column)
        elif left.kind and right.kind and left.kind != right.kind and {left.kind, right.kind} != {
                "number", "bool"}:
            literal_last = isinstance(right, _Literal) and not isinstance(left, _Literal)
            a, b = (right, left) if literal_last else (left, right)
            raise ExprError(f"compares {a.describe()} with {b.describe()}", column)
        return _Compare(symbol, left, right)

    def _check_state(self, symbol: str, column: int, other: _Node) -> None:
        allowed = ", ".join(f'"{s}"' for s in STATES)
        if symbol not in ("==", "!="):
            raise ExprError("'state' can only be compared with == or !=", column)
        if not (isinstance(other, _Literal) and isinstance(other.value, str)):
            raise ExprError(f"'state' can only be compared with a state name in quotes: {allowed}",
                            column)
        if other.value not in STATES:
            close = difflib.get_close_matches(other.value.lower(), STATES, 1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ExprError(f"'{other.value}' is not a machine state; use one of {allowed}{hint}",
                            other.column)


# --- closures -------------------------------------------------------------------------------


def _compile_truth(node: _Node) -> _Test | bool:
    """A test of `node` as true/false, or its value when it reads nothing."""
    if isinstance(node, _Literal):
        return _is_true(node.value)
    if isinstance(node, _Tag):
        return _tag_is_true(node.name)
    if isinstance(node, _Compare):
        return _compile_compare(node)
    if isinstance(node, _Logic):
        if node.op == "not":
            inner = _compile_truth(node.args[0])
            return (not inner) if isinstance(inner, bool) else _negation(inner)
        return _compile_junction(node.op == "and", [_compile_truth(a) for a in node.args])
    raise AssertionError(node)  # _State was rejected by the parser


def _compile_junction(conjunction: bool, parts: list[_Test | bool]) -> _Test | bool:
    # A constant that decides the whole junction decides it whatever the rest reads (a missing
    # tag still makes the Condition false before this runs); a neutral constant drops out.
    if any(p is (not conjunction) for p in parts):
        return not conjunction
    tests = [p for p in parts if not isinstance(p, bool)]
    if not tests:
        return conjunction
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        if conjunction:
            return lambda v, s: first(v, s) and second(v, s)
        return lambda v, s: first(v, s) or second(v, s)
    return _all(tests) if conjunction else _any(tests)


def _compile_compare(node: _Compare) -> _Test | bool:
    op, left, right = node.op, _compile_operand(node.left), _compile_operand(node.right)
    if not callable(left):
        if not callable(right):
            return _COMPARE[op](left, right)
        left, right, op = right, left, _FLIPPED[op]
        node = _Compare(op, node.right, node.left)
    if not callable(right):
        if isinstance(node.left, _State):
            return _state_equals(right) if op == "==" else _state_differs(right)
        if isinstance(node.left, _Tag):
            return _tag_versus_constant(op, node.left.name, right)
        right = _always(right)
    return _compare_both(_COMPARE[op], left, right)


def _compile_operand(node: _Node) -> _Getter | Value:
    """A getter of `node`'s value, or the value itself when it reads nothing (no value is
    callable, so `callable()` tells them apart)."""
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Tag):
        name = node.name
        return lambda v, s: v[name]
    if isinstance(node, _State):
        return lambda v, s: s
    return _compile_truth(node)


def _is_true(x: Value) -> bool:
    return x is True or (x.__class__ in _NUMBERS and x != 0 and x == x)


def _equal(a: Value, b: Value) -> bool:
    kind = _COMPARABLE.get(a.__class__)
    return kind is not None and kind == _COMPARABLE.get(b.__class__) and a == b


def _unequal(a: Value, b: Value) -> bool:
    # NaN is unequal to everything in Python; here it compares false both ways.
    kind = _COMPARABLE.get(a.__class__)
    return (kind is not None and kind == _COMPARABLE.get(b.__class__)
            and a == a and b == b and a != b)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Value, Value], bool]:
    def ordered(a: Value, b: Value) -> bool:
        return a.__class__ in _NUMBERS and b.__class__ in _NUMBERS and compare(a, b)
    return ordered


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_COMPARE = {"==": _equal, "!=": _unequal, **{op: _ordered(f) for op, f in _ORDER.items()}}


def _always(value: Value) -> Callable[[Mapping[str, Value], str | None], bool]:
    return lambda v, s: value  # type: ignore[return-value]


def _negation(test: _Test) -> _Test:
    return lambda v, s: not test(v, s)


def _all(tests: list[_Test]) -> _Test:
    def every(v: Mapping[str, Value], s: str | None) -> bool:
        return all(test(v, s) for test in tests)
    return every


def _any(tests: list[_Test]) -> _Test:
    def some(v: Mapping[str, Value], s: str | None) -> bool:
        return any(test(v, s) for test in tests)
    return some


def _compare_both(compare: Callable[[Value, Value], bool], left: _Getter, right: _Getter) -> _Test:
    return lambda v, s: compare(left(v, s), right(v, s))


def _state_equals(name: Value) -> _Test:
    return lambda v, s: s == name


def _state_differs(name: Value) -> _Test:
    # No committed state yet compares false both ways, as a missing value does.
    return lambda v, s: s is not None and s != name


def _tag_is_true(name: str) -> _Test:
    def test(v: Mapping[str, Value], s: str | None) -> bool:
        x = v[name]
        return x is True or (x.__class__ in _NUMBERS and x != 0 and x == x)
    return test


# The common rule shape, a tag against a constant, gets its own closure that reads the value
# once and skips the general path's getter calls.
def _tag_versus_constant(op: str, name: str, c: Value) -> _Test:
    if op == "==":
        # Values of kinds that do not fit are never equal in Python either, NaN included.
        return lambda v, s: v[name] == c
    if op == "!=":
        kind = _COMPARABLE[c.__class__]

        def differs(v: Mapping[str, Value], s: str | None) -> bool:
            x = v[name]
            return _COMPARABLE.get(x.__class__) == kind and x == x and x != c
        return differs
    compare = _ORDER[op]  # the parser has made sure that `c` is a number

    def ordered(v: Mapping[str, Value], s: str | None) -> bool:
        x = v[name]
        return x.__class__ in _NUMBERS and compare(x, c)
    return ordered

"""The condition language of machine-state rules: what conditions mean, and what they reject."""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.derive.expr import Condition, ExprError, TagKind, compile_condition
from collector.model import Value

TAGS: dict[str, TagKind] = {
    "motor_current": "number", "speed": "number", "amber": "bool", "door_open": "bool",
    "mode": "text", "mode_code": "number", "a": "bool", "b": "bool", "c": "bool",
    "raw": None, "other": None,
}


def holds(text: str, values: Mapping[str, Value], state: str | None = None) -> bool:
    return compile_condition(text, TAGS)(values, state)


def error(text: str, tags: Mapping[str, TagKind] = TAGS) -> ExprError:
    with pytest.raises(ExprError) as caught:
        compile_condition(text, tags)
    return caught.value


# --- meaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "c", "expected"), [
    (True, False, False, True),  # (a or b) and c would be False
    (False, True, True, True),
    (False, True, False, False),
    (False, False, True, False),
])
def test_and_binds_tighter_than_or(a: bool, b: bool, c: bool, expected: bool) -> None:
    assert holds("a or b and c", {"a": a, "b": b, "c": c}) is expected
    assert holds("c and b or a", {"a": a, "b": b, "c": c}) is expected


def test_parentheses_override_precedence() -> None:
    values = {"a": True, "b": False, "c": False}
    assert holds("a or b and c", values) is True
    assert holds("(a or b) and c", values) is False
    assert holds("((a) or (b)) and (c)", values) is False


def test_not_binds_tighter_than_and_but_looser_than_comparison() -> None:
    assert holds("not a and b", {"a": False, "b": False}) is False  # not (a and b) would be True
    assert holds("not (a and b)", {"a": False, "b": False}) is True
    assert holds("not motor_current > 3", {"motor_current": 2}) is True
    assert holds("not motor_current > 3", {"motor_current": 4}) is False
    assert holds("not not amber", {"amber": True}) is True


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("motor_current > 8", {"motor_current": 9}, True),
    ("motor_current > 8", {"motor_current": 8}, False),
    ("motor_current >= 8", {"motor_current": 8}, True),
    ("motor_current >= 8", {"motor_current": 7.999}, False),
    ("motor_current < 8.5", {"motor_current": 8}, True),
    ("motor_current < 8.5", {"motor_current": 8.5}, False),
    ("motor_current <= 8.5", {"motor_current": 8.5}, True),
    ("motor_current <= -3.5", {"motor_current": -3}, False),
    ("motor_current > -3.5", {"motor_current": -3}, True),
    ("motor_current == 1e3", {"motor_current": 1000}, True),
    ("motor_current == .5", {"motor_current": 0.5}, True),
    ("motor_current == 2", {"motor_current": 2.0}, True),
    ("motor_current != 2", {"motor_current": 2.0}, False),
    ("motor_current != 2", {"motor_current": 3}, True),
    ("8 < motor_current", {"motor_current": 9}, True),
    ("8 <= motor_current", {"motor_current": 7}, False),
    ("motor_current > speed", {"motor_current": 2, "speed": 1.5}, True),
    ("motor_current <= speed", {"motor_current": 2, "speed": 1.5}, False),
    ("motor_current == speed", {"motor_current": 2, "speed": 2.0}, True),
    ("amber == true", {"amber": True}, True),
    ("amber == false", {"amber": True}, False),
    ("amber != false", {"amber": True}, True),
    ("amber == door_open", {"amber": False, "door_open": False}, True),
    ("amber != door_open", {"amber": False, "door_open": True}, True),
    ("amber == 1", {"amber": True}, True),  # true == 1
    ("mode_code == true", {"mode_code": 1}, True),
    ("mode_code != false", {"mode_code": 0}, False),
    ('mode == "AUTO"', {"mode": "AUTO"}, True),
    ("mode == 'AUTO'", {"mode": "auto"}, False),
    ('mode != "AUTO"', {"mode": "MANUAL"}, True),
    ('mode != "AUTO"', {"mode": "AUTO"}, False),
    ('"AUTO" == mode', {"mode": "AUTO"}, True),
    ("mode == 'it\\'s'", {"mode": "it's"}, True),
    ('mode == "say \\"hi\\""', {"mode": 'say "hi"'}, True),
    ('mode == "a\\\\b"', {"mode": "a\\b"}, True),
    ('mode == ""', {"mode": ""}, True),
])
def test_comparisons(text: str, values: dict[str, Value], expected: bool) -> None:
    assert holds(text, values) is expected


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), (-2, True), (0.1, True), (0.0, False),
    (-0.0, False), (math.inf, True), (math.nan, False), (None, False), ("on", False), ("", False),
])
def test_a_bare_operand_is_true_for_true_and_for_nonzero_numbers(value: Value,
                                                                expected: bool) -> None:
    assert holds("raw", {"raw": value}) is expected
    assert holds("not raw", {"raw": value}) is (not expected)


def test_a_bare_bool_and_number_tag() -> None:
    assert holds("amber", {"amber": True}) is True
    assert holds("not door_open", {"door_open": False}) is True
    assert holds("speed", {"speed": 0}) is False
    assert holds("speed and amber", {"speed": 12.5, "amber": True}) is True


def test_a_tag_without_a_good_reading_fails_the_whole_condition() -> None:
    rule = compile_condition("motor_current > 1 or amber", TAGS)
    assert rule({"motor_current": 0.5, "amber": True}) is True
    assert rule({"amber": True}) is False
    assert rule({"motor_current": 5}) is False
    assert compile_condition("true or amber", TAGS)({}) is False
    assert compile_condition("not amber", TAGS)({}) is False
    assert compile_condition("not (amber or door_open)", TAGS)({"amber": False}) is False


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
@pytest.mark.parametrize("value", [math.nan, None, "7", True])
def test_values_of_a_kind_that_does_not_fit_compare_false(op: str, value: Value) -> None:
    if isinstance(value, bool) and op in ("==", "!="):
        return  # true == 1 is a fair comparison
    assert holds(f"raw {op} 7", {"raw": value}) is False
    assert holds(f"7 {op} raw", {"raw": value}) is False
    assert holds(f"raw {op} other", {"raw": value, "other": 7}) is False
    assert holds(f"other {op} raw", {"raw": value, "other": 7}) is False


def test_text_compared_with_numbers_at_run_time_is_false_both_ways() -> None:
    assert holds('raw == "7"', {"raw": 7}) is False
    assert holds('raw != "7"', {"raw": 7}) is False
    assert holds('raw != "7"', {"raw": "8"}) is True
    assert holds("raw == other", {"raw": "7", "other": 7}) is False
    assert holds("raw != other", {"raw": "7", "other": 7}) is False
    assert holds("raw != other", {"raw": "7", "other": "8"}) is True


def test_infinities_are_ordinary_numbers() -> None:
    assert holds("raw > 1e300", {"raw": math.inf}) is True
    assert holds("raw < 0", {"raw": -math.inf}) is True


def test_state_gives_rules_hysteresis() -> None:
    tags: dict[str, TagKind] = {"motor_current": "number"}
    running = compile_condition(
        'motor_current > 8 or (state == "running" and motor_current > 6)', tags)
    assert running.uses_state is True
    assert running.tags == frozenset({"motor_current"})
    assert running({"motor_current": 7}, "idle") is False
    assert running({"motor_current": 9}, "idle") is True
    assert running({"motor_current": 7}, "running") is True
    assert running({"motor_current": 5}, "running") is False
    assert running({"motor_current": 7}) is False  # no committed state yet
    assert compile_condition("'idle' == state", tags)({}, "idle") is True
    assert compile_condition('state != "offline"', tags)({}, "idle") is True
    assert compile_condition('state != "offline"', tags)({}, "offline") is False
    assert compile_condition('state != "offline"', tags)({}, None) is False


def test_a_tag_called_state_is_read_instead_of_the_machine_state() -> None:
    rule = compile_condition("state > 2", {"state": "number"})
    assert rule.uses_state is False
    assert rule.tags == frozenset({"state"})
    assert rule({"state": 3}, "idle") is True
    assert rule({}, "running") is False
    assert compile_condition('state == "MANUAL"', {"state": "text"})({"state": "MANUAL"}) is True


@pytest.mark.parametrize(("text", "constant"), [
    ("true", True), ("false", False), ("not false", True), ("1 > 2", False), ("1 < 2", True),
    ("2 == 2.0", True), ("1 == true", True), ('"a" == "a"', True), ("'a' != \"a\"", False),
    ("1", True), ("0", False), ("-0.0", False), ("true and (false or not false)", True),
    ("(1 > 2) == false", True), ("not (true and 3 >= 3)", False),
])
def test_conditions_without_tags_fold_to_a_constant(text: str, constant: bool) -> None:
    rule = compile_condition(text, TAGS)
    assert rule.constant is constant
    assert rule.tags == frozenset() and rule.uses_state is False
    assert rule({}) is constant
    assert rule({"amber": True}, "running") is constant


def test_a_condition_that_reads_a_tag_or_the_state_is_not_constant() -> None:
    rule = compile_condition("false and amber", TAGS)
    assert (rule.constant, rule.tags, rule({"amber": True})) == (None, frozenset({"amber"}), False)
    rule = compile_condition("true or amber", TAGS)
    assert (rule.constant, rule({"amber": False}), rule({})) == (None, True, False)
    rule = compile_condition('true or state == "idle"', TAGS)
    assert (rule.constant, rule.uses_state, rule({})) == (None, True, True)


def test_condition_records_what_it_reads() -> None:
    rule = compile_condition('(mode == "AUTO" and speed > 3) or not amber', TAGS)
    assert isinstance(rule, Condition)
    assert rule.text == '(mode == "AUTO" and speed > 3) or not amber'
    assert rule.tags == frozenset({"mode", "speed", "amber"})
    assert rule.uses_state is False
    assert rule.constant is None


def test_long_junctions_evaluate_every_part() -> None:
    tags: dict[str, TagKind] = {f"t{i}": "number" for i in range(200)}
    every = compile_condition(" and ".join(f"t{i} > 0" for i in range(200)), tags)
    some = compile_condition(" or ".join(f"t{i} > 0" for i in range(200)), tags)
    values: dict[str, Value] = {f"t{i}": 1 for i in range(200)}
    assert every(values) is True and some(values) is True
    values["t150"] = 0
    assert every(values) is False and some(values) is True
    assert some({name: 0 for name in tags}) is False


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("motr_current > 3", "unknown tag 'motr_current' (did you mean 'motor_current'?) at column 1"),
    ("speed > 1 and xyzzy", "unknown tag 'xyzzy' at column 15"),
    ("Amber", "unknown tag 'Amber' (did you mean 'amber'?) at column 1"),
    ("stat == 'idle'", "unknown tag 'stat' (did you mean 'state'?) at column 1"),
    ('mode_code == "AUTO"', "compares text \"AUTO\" with number tag 'mode_code' at column 11"),
    ('"AUTO" != mode_code', "compares text \"AUTO\" with number tag 'mode_code' at column 8"),
    ("mode == 3", "compares number 3 with text tag 'mode' at column 6"),
    ('amber == "on"', "compares text \"on\" with bool tag 'amber' at column 7"),
    ("mode == speed", "compares text tag 'mode' with number tag 'speed' at column 6"),
    ('1 == "1"', 'compares number 1 with text "1" at column 3'),
    ('true != "true"', 'compares true with text "true" at column 6'),
    ('(speed > 1) == "x"', 'compares text "x" with a true/false condition at column 13'),
    ("amber > 0", "'>' needs numbers on both sides, not bool tag 'amber': true/false do not count "
                  "as 1/0 at column 7"),
    ("speed <= true", "'<=' needs numbers on both sides, not true: true/false do not count as 1/0 "
                      "at column 7"),
    ('mode < "B"', "'<' needs numbers on both sides, not text tag 'mode': text can only be "
                   "compared with == or != at column 6"),
    ('"a" >= "b"', "'>=' needs numbers on both sides, not text \"a\": text can only be compared "
                   "with == or != at column 5"),
    ("1 < speed < 5", "comparisons cannot be chained: join them with 'and', e.g. "
                      "'1 < speed and speed < 5' at column 11"),
    ("speed == 1 == true", "comparisons cannot be chained: join them with 'and', e.g. "
                           "'speed == 1 and 1 == true' at column 12"),
    ("(speed) < 2 <", "comparisons cannot be chained: join them with 'and' at column 13"),
    ("speed > 1 and", "the condition ends too early: something must follow 'and' at column 11"),
    ("motor_current > 1 and ", "the condition ends too early: something must follow 'and' at "
                               "column 19"),
    ("speed >", "the condition ends too early: something must follow '>' at column 7"),
    ("not", "the condition ends too early: something must follow 'not' at column 1"),
    ("amber or (", "the condition ends too early: something must follow '(' at column 10"),
    ("(speed > 1", "'(' is not closed: add a ')' at column 1"),
    ("((a) or (b)", "'(' is not closed: add a ')' at column 1"),
    ("speed > 1)", "')' has no matching '(' at column 10"),
    ("(a))", "')' has no matching '(' at column 4"),
    (")", "a condition cannot start with ')' at column 1"),
    ("()", "nothing between '(' and ')' at column 1"),
    ("", "the condition is empty at column 1"),
    (" \t ", "the condition is empty at column 1"),
    ("speed $ 1", "unexpected character '$' at column 7"),
    ("speed > 1;", "unexpected character ';' at column 10"),
    ("a b", "'b' cannot follow 'a': join conditions with 'and' or 'or' at column 3"),
    ("speed > 1 2", "'2' cannot follow '1': join conditions with 'and' or 'or' at column 11"),
    ("and a", "a condition cannot start with 'and' at column 1"),
    ("speed > > 1", "expected a value after '>', found '>' at column 9"),
    ("a == not b", "expected a value after '==', found 'not' at column 6"),
    ('"abc', "text opened with \" is not closed at column 1"),
    ("mode == 'abc\\'", "text opened with ' is not closed at column 9"),
    ('mode == "a\\nb"', "unknown escape '\\n' in text: only \\\\, \\\" and \\' are allowed at "
                       "column 11"),
    ("speed > 1 && amber", "use 'and' instead of '&&' at column 11"),
    ("speed > 1 & amber", "use 'and' instead of '&' at column 11"),
    ("speed > 1 || amber", "use 'or' instead of '||' at column 11"),
    ("!amber", "use 'not' instead of '!' at column 1"),
    ("speed = 1", "use '==' to compare at column 7"),
    ("speed => 1", "use '>=' instead of '=>' at column 7"),
    ("speed <> 1", "use '!=' instead of '<>' at column 7"),
    ("speed ≥ 1", "use '>=' instead of '≥' at column 7"),
    ("mode == “AUTO”", "use straight quotes \" or ' around text at column 9"),
    ("True", "use 'true' instead of 'True' at column 1"),
    ("amber == FALSE", "use 'false' instead of 'FALSE' at column 10"),
    ("a AND b", "use 'and' instead of 'AND' at column 3"),
    ("a Or b", "use 'or' instead of 'Or' at column 3"),
    ("NOT a", "use 'not' instead of 'NOT' at column 1"),
    ("speed + 1 > 2", "conditions have no arithmetic: '+' is not allowed at column 7"),
    ("speed > -x", "'-' must be directly followed by a number: conditions have no arithmetic at "
                   "column 9"),
    ("speed > 3x", "'3x' is not a number, and names start with a letter or '_' at column 9"),
    ("speed > 1.2.3", "'1.2.3' is not a number, and names start with a letter or '_' at column 9"),
    ("speed > 1e", "'1e' is not a number, and names start with a letter or '_' at column 9"),
    ("mode", "text tag 'mode' is not true or false: compare it, e.g. mode == \"AUTO\" at column 1"),
    ("amber and not mode", "text tag 'mode' is not true or false: compare it, e.g. "
                           "mode == \"AUTO\" at column 15"),
    ("'x' or amber", "text \"x\" is not true or false at column 1"),
    ("state", "'state' is the machine's state name, not true or false: compare it, e.g. "
              "state == \"running\" at column 1"),
    ('state == "runing"', "'runing' is not a machine state; use one of \"running\", \"idle\", "
                          "\"stopped\", \"offline\" (did you mean 'running'?) at column 10"),
    ('state == "warming"', "'warming' is not a machine state; use one of \"running\", \"idle\", "
                           "\"stopped\", \"offline\" at column 10"),
    ('state == "Idle"', "'Idle' is not a machine state; use one of \"running\", \"idle\", "
                        "\"stopped\", \"offline\" (did you mean 'idle'?) at column 10"),
    ('state > "idle"', "'state' can only be compared with == or != at column 7"),
    ("state == 1", "'state' can only be compared with a state name in quotes: \"running\", "
                   "\"idle\", \"stopped\", \"offline\" at column 7"),
    ("mode == state", "'state' can only be compared with a state name in quotes: \"running\", "
                      "\"idle\", \"stopped\", \"offline\" at column 6"),
    ("(" * 33 + "amber" + ")" * 33, "more than 32 parentheses or 'not's inside each other at "
                                    "column 33"),
])
def test_errors_say_what_is_wrong_and_where(text: str, message: str) -> None:
    exc = error(text)
    assert str(exc) == message
    assert exc.message == message.rsplit(" at column ", 1)[0]
    assert exc.column == int(message.rsplit(" ", 1)[1])


def test_the_leftmost_problem_is_reported() -> None:
    assert error('motr > 1 and mode == "AUTO').column == 1
    assert error('mode == 3 and "AUTO').column == 6


def test_a_tag_name_that_starts_with_a_digit_is_named_in_the_error() -> None:
    exc = error("2nd_stage > 1", {"2nd_stage": "number"})
    assert str(exc) == ("tag '2nd_stage' starts with a digit, which conditions cannot read: "
                        "names in conditions start with a letter or '_' at column 1")


def test_expr_error_is_a_value_error_that_survives_pickling() -> None:
    exc = error("speed >")
    assert isinstance(exc, ValueError)
    copy = pickle.loads(pickle.dumps(exc))
    assert (str(copy), copy.message, copy.column) == (str(exc), exc.message, exc.column)


# --- properties ------------------------------------------------------------------------------

_PIECES = [
    *TAGS, "state", "motr", "Amber", "and", "or", "not", "true", "false", "True", "AND",
    "<", "<=", ">", ">=", "==", "!=", "=", "!", "&&", "||", "=>", "+", "-", "(", ")", "((", "))",
    "0", "1", "-3.5", "1e3", ".5", "1.", "3x", "1e", '"AUTO"', "'idle'", '"running"', "'it\\'s'",
    '"', "'", "\\", "$", "≥", "“", " ", "\t", "\n",
]
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.sampled_from(["AUTO", "running", "idle", "", "0"]),
)


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=14),
       spaced=st.booleans(),
       values=st.dictionaries(st.sampled_from(list(TAGS)), _VALUES),
       state=st.sampled_from([None, "running", "idle", "stopped", "offline", "weird"]))
def test_token_soup_compiles_or_fails_with_expr_error_and_never_raises_at_run_time(
        pieces: list[str], spaced: bool, values: dict[str, Value], state: str | None) -> None:
    text = (" " if spaced else "").join(pieces)
    try:
        rule = compile_condition(text, TAGS)
    except ExprError as exc:
        assert 1 <= exc.column <= len(text) + 1
        assert str(exc) == f"{exc.message} at column {exc.column}"
        return
    result = rule(values, state)
    assert result is True or result is False
    if not rule.tags <= values.keys():
        assert result is False
    if rule.constant is not None:
        assert result is rule.constant


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_any_text_compiles_or_fails_with_expr_error(text: str) -> None:
    try:
        rule = compile_condition(text, TAGS)
    except ExprError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    assert rule({name: 1 for name in rule.tags}, "idle") in (True, False)


# A second, independent statement of the semantics, to check compiled conditions against.
_UNKNOWN: dict[str, TagKind] = {"p": None, "q": None, "r": None}
_ORDERINGS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _group(x: Value) -> str | None:
    if isinstance(x, bool) or (isinstance(x, int | float) and not math.isnan(x)):
        return "number or bool"
    return "text" if isinstance(x, str) else None


def _expected(tree: tuple, values: Mapping[str, Value]) -> bool:
    kind = tree[0]
    if kind == "not":
        return not _expected(tree[1], values)
    if kind in ("and", "or"):
        left, right = _expected(tree[1], values), _expected(tree[2], values)
        return (left and right) if kind == "and" else (left or right)
    if kind == "bare":
        x = _operand_value(tree[1], values)
        if isinstance(x, bool):
            return x
        return isinstance(x, int | float) and x != 0 and not math.isnan(x)
    op, a, b = tree[1], _operand_value(tree[2], values), _operand_value(tree[3], values)
    if op in _ORDERINGS:
        numbers = type(a) in (int, float) and type(b) in (int, float)
        return numbers and bool(_ORDERINGS[op](a, b))
    if _group(a) is None or _group(a) != _group(b):
        return False
    return (a == b) if op == "==" else (a != b)


def _operand_value(operand: tuple[str, Value], values: Mapping[str, Value]) -> Value:
    return values[str(operand[1])] if operand[0] == "tag" else operand[1]


def _source(tree: tuple) -> str:
    kind = tree[0]
    if kind == "not":
        return f"not ({_source(tree[1])})"
    if kind in ("and", "or"):
        return f"({_source(tree[1])}) {kind} ({_source(tree[2])})"
    if kind == "bare":
        return _operand_source(tree[1])
    return f"{_operand_source(tree[2])} {tree[1]} {_operand_source(tree[3])}"


def _operand_source(operand: tuple[str, Value]) -> str:
    x = operand[1]
    if operand[0] == "tag" or isinstance(x, int | float) and not isinstance(x, bool):
        return str(x)
    if isinstance(x, bool):
        return "true" if x else "false"
    return '"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"'


_TAG = st.sampled_from(list(_UNKNOWN)).map(lambda name: ("tag", name))
_NUMBER = st.one_of(st.integers(-3, 3), st.floats(-3, 3).map(lambda f: round(f, 2)))
_LITERAL = st.one_of(_NUMBER, st.booleans(), st.sampled_from(["AUTO", "", 'say "hi"', "a\\b"]))


def _comparisons(ops: list[str], literal: st.SearchStrategy[Value]) -> st.SearchStrategy[tuple]:
    other = st.one_of(_TAG, literal.map(lambda x: ("literal", x)))
    return st.one_of(st.tuples(st.just("cmp"), st.sampled_from(ops), _TAG, other),
                     st.tuples(st.just("cmp"), st.sampled_from(ops), other, _TAG))


# Ordering a bool or a text literal is a compile-time error, so only numbers are ordered here.
_COMPARISON = st.one_of(_comparisons(["<", "<=", ">", ">="], _NUMBER),
                        _comparisons(["==", "!="], _LITERAL))
_TREES = st.recursive(
    st.one_of(_COMPARISON, st.tuples(st.just("bare"), _TAG)),
    lambda inner: st.one_of(st.tuples(st.just("not"), inner),
                            st.tuples(st.sampled_from(["and", "or"]), inner, inner)),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(tree=_TREES, values=st.dictionaries(st.sampled_from(list(_UNKNOWN)), _VALUES))
def test_compiled_conditions_agree_with_the_semantics(tree: tuple,
                                                      values: dict[str, Value]) -> None:
    rule = compile_condition(_source(tree), _UNKNOWN)
    complete = rule.tags <= values.keys()
    assert rule(values) is (_expected(tree, values) if complete else False)

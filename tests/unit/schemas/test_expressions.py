"""The expression language: values of every operator, errors with positions, and a
row-by-row reference interpreter that random expressions must agree with."""

from __future__ import annotations

import math
import operator
import pickle
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache, partial
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.schemas.errors import DefinitionError
from headwater.schemas.expressions import (
    ExpressionError,
    apply_filter_and_transforms,
    compile_expression,
    compile_transforms,
    output_types,
)

TS = 1795705445123  # 2026-11-26T15:04:05.123Z, a Thursday
FIELDS = {
    "l": "long",
    "i": "int",
    "d": "double",
    "f": "float",
    "s": "string",
    "b": "boolean",
    "ts": "long",
    "weird name": "string",
    "raw": "bytes",
}
TABLE = pa.table(
    {
        "l": pa.array([7, -7, 0, None], pa.int64()),
        "i": pa.array([2, 3, 0, 1], pa.int32()),
        "d": [1.5, -2.5, 0.0, None],
        "f": pa.array([0.5, 0.5, 0.5, 0.5], pa.float32()),
        "s": ["Ab", " x ", "", None],
        "b": [True, False, None, True],
        "ts": pa.array([TS, 0, -1, None], pa.int64()),
        "weird name": ["w", "w", "w", None],
    }
)


def ev(text: str, table: pa.Table = TABLE) -> list[Any]:
    expression = compile_expression(text, FIELDS)
    result = expression.evaluate(table)
    assert result.type == ARROW[expression.type]
    return list(result.to_pylist())


ARROW = {"long": pa.int64(), "double": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}


@pytest.mark.parametrize(
    ("text", "type_"),
    [
        ("l + i", "long"),
        ("l * 2 - i % 3", "long"),
        ("l / i", "double"),
        ("l + d", "double"),
        ("f * 2", "double"),
        ("-i", "long"),
        ("s + 'x'", "string"),
        ("abs(l)", "long"),
        ("round(l)", "long"),
        ("round(d)", "double"),
        ("if(b, l, d)", "double"),
        ("coalesce(l, 1)", "long"),
        ("length(s)", "long"),
        ("hour(ts)", "long"),
        ("l in (1)", "boolean"),
    ],
)
def test_result_types(text: str, type_: str) -> None:
    assert compile_expression(text, FIELDS).type == type_  # int and int stay long, / is double


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("l + i", [9, -4, 0, None]),
        ("l - i", [5, -10, 0, None]),
        ("l * i", [14, -21, 0, None]),
        ("l % i", [1, -1, None, None]),  # sign of the dividend; % 0 is null
        ("l / i", [3.5, -7 / 3, None, None]),
        ("l / 0", [None] * 4),
        ("d / 0.0", [None] * 4),  # never an error, never inf
        ("d % 1", [0.5, -0.5, 0.0, None]),
        ("-l", [-7, 7, 0, None]),
        ("l + d", [8.5, -9.5, 0.0, None]),
        ("i * 2", [4, 6, 0, 2]),  # an int32 column is widened
        ("f + 1", [1.5, 1.5, 1.5, 1.5]),
        ("l * 0 + 9223372036854775807 + 1", [-(2**63)] * 3 + [None]),  # wraps like Java
        ("s + '!'", ["Ab!", " x !", "!", None]),
        ("s + null", [None] * 4),
        ("1 + 2 * 3", [7] * 4),
        ("(1 + 2) * 3", [9] * 4),  # constants broadcast
        ("10 - 2 - 3", [5] * 4),
        ("2 * 3 % 4", [2] * 4),
        ("-2 * -3", [6] * 4),
        ("1e3 + .5", [1000.5] * 4),
        ("l > 0", [True, False, False, None]),
        ("l == d", [False, False, True, None]),  # long and double compare as numbers
        ("l != i", [True, True, False, None]),
        ("s < 'b'", [True, True, True, None]),
        ("b == true", [True, False, None, True]),
        ("l in (7, 0)", [True, False, True, None]),
        ("l not in (7, 0)", [False, True, False, None]),
        ("l in (7, null)", [True, None, None, None]),  # SQL: no match plus a null is null
        ("l in (i, 0)", [False, False, True, None]),  # non-literal members
        ("d in (1.5, 7)", [True, False, False, None]),
        ("s in ('Ab', '')", [True, False, True, None]),
        ("s is null", [False, False, False, True]),
        ("d is not null", [True, True, True, False]),
        ("not true and false", [False] * 4),  # not binds tighter than and
        ("true or false and false", [True] * 4),  # and binds tighter than or
        ("1 + 2 == 3 and not 1 > 2", [True] * 4),
        ("`weird name` == 'w'", [True, True, True, None]),
        ('\'it\\\'s\' + "\\"q\\"\\n" == \'it\' + "\'s\\"q\\"\\u000a"', [True] * 4),
        ("if(b, l, d)", [7.0, -2.5, 0.0, None]),  # null condition picks the else branch
        ("if(l > 0, 'pos', 'other')", ["pos", "other", "other", "other"]),
        ("if(b, null, 1)", [None, 1, 1, None]),
        ("coalesce(l, d, 0)", [7.0, -7.0, 0.0, 0.0]),
        ("coalesce(s, 'none')", ["Ab", " x ", "", "none"]),
        ("abs(l)", [7, 7, 0, None]),
        ("round(d)", [2.0, -3.0, 0.0, None]),  # half away from zero
        ("round(d * 1.1, 1)", [1.7, -2.8, 0.0, None]),
        ("round(l * 5, -1)", [40, -40, 0, None]),
        ("floor(d)", [1.0, -3.0, 0.0, None]),
        ("ceil(d)", [2.0, -2.0, 0.0, None]),
        ("sqrt(i * 8)", [4.0, math.sqrt(24), 0.0, math.sqrt(8)]),
        ("sqrt(l)", [math.sqrt(7), None, 0.0, None]),  # negative gives null, not NaN
        ("lower(s)", ["ab", " x ", "", None]),
        ("upper(s)", ["AB", " X ", "", None]),
        ("trim(s)", ["Ab", "x", "", None]),
        ("length(s)", [2, 3, 0, None]),
        ("starts_with(s, 'A')", [True, False, False, None]),
        ("ends_with(s, 'x ')", [False, True, False, None]),
        ("contains(s, 'x')", [False, True, False, None]),
        ("substr(s, 1, 5)", ["b", "x ", "", None]),
        ("substr('héllo', 1, 2)", ["él"] * 4),
        ("concat(s, '-', to_string(l))", ["Ab-7", " x --7", "-0", "-"]),  # null counts as ''
        ("to_string(b)", ["true", "false", None, "true"]),
        ("to_string(d)", ["1.5", "-2.5", "0", None]),
        ("to_double(' 1e3 ')", [1000.0] * 4),
        ("to_double(s)", [None] * 4),  # not a number: null, never an error
        ("to_double(null)", [None] * 4),
        ("to_long(d)", [1, -2, 0, None]),  # truncates toward zero
        ("to_long(d * 1e300 * 1e300)", [None, None, 0, None]),  # inf does not wrap
        ("to_long(b)", [1, 0, None, 1]),
        ("to_long('+0012')", [12] * 4),
        ("to_long('-9223372036854775808')", [-(2**63)] * 4),
        ("to_long('9223372036854775808')", [None] * 4),  # out of range: null
        ("to_long('1.5')", [None] * 4),
        ("year(ts)", [2026, 1970, 1969, None]),
        ("month(ts)", [11, 1, 12, None]),  # UTC
        ("day_of_month(ts)", [26, 1, 31, None]),
        ("hour(ts)", [15, 0, 23, None]),
        ("day_of_week(ts)", [3, 3, 2, None]),  # Monday = 0: Thursday, Thursday, Wednesday
        ("minute(ts)", [4, 0, 59, None]),
        ("year(ts * 1000000)", [None, 1970, 1969, None]),  # beyond year 9999: null, not garbage
    ],
)
def test_values(text: str, expected: list[Any]) -> None:
    assert ev(text) == pytest.approx(expected)


def test_kleene_truth_table() -> None:
    values = [True, False, None]
    pairs = [(x, y) for x in values for y in values]
    table = pa.table({"x": [x for x, _ in pairs], "y": [y for _, y in pairs]})

    def run(text: str) -> list[Any]:
        types = {"x": "boolean", "y": "boolean"}
        return list(compile_expression(text, types).evaluate(table).to_pylist())

    assert run("x and y") == [False if False in p else None if None in p else True for p in pairs]
    assert run("x or y") == [True if True in p else None if None in p else False for p in pairs]
    assert run("not x") == [False] * 3 + [True] * 3 + [None] * 3


def test_fields_empty_tables_and_pickling() -> None:
    expression = compile_expression("l > 0 and `weird name` is null or b", FIELDS)
    assert expression.fields == {"l", "weird name", "b"}
    assert compile_expression("1 + 2", FIELDS).fields == frozenset()
    assert compile_expression("l + 1", FIELDS).evaluate(TABLE.slice(0, 0)).to_pylist() == []
    copy = pickle.loads(pickle.dumps(expression))  # recompiled from its text
    assert copy == expression and copy.evaluate(TABLE).equals(expression.evaluate(TABLE))


@pytest.mark.parametrize(
    ("text", "position", "fragments"),
    [
        (
            "amout + 1",
            0,
            ["unknown field 'amout'", "known fields: amount, raw, status", "'amount'?"],
        ),
        ("'a' + 1", 4, ["'+'", "string and long", "to_string"]),
        ("amount and status", 0, ["left operand of 'and'", "boolean", "long 'amount'"]),
        ("lower(amount)", 6, ["lower()", "must be string", "long 'amount'"]),
        ("round(amount, 1, 2)", 0, ["'round'", "1 or 2 arguments", "got 3"]),
        ("foo(amount)", 0, ["unknown function 'foo'", "known functions: abs, ceil"]),
        ("flor(amount)", 0, ["did you mean 'floor'?"]),
        ("(amount + 1", 0, ["unclosed '('", "')'"]),
        ("amount +", 7, ["ends after '+'", "a value"]),
        ("coalesce(amount,", 15, ["ends after ','"]),
        ("amount + 1)", 10, ["unexpected ')'", "closes nothing"]),
        ("amount amount", 7, ["unexpected 'amount'", "an operator"]),
        ("amount < 1 < 2", 11, ["unexpected '<'", "do not chain"]),
        ("amount = 1", 7, ["'='", "'=='"]),
        ("amount && 1", 7, ["'&'", "'and'"]),
        ("status is 3", 10, ["unexpected '3'", "'not' or 'null'"]),
        ("amount == null", 7, ["null is always null", "is null"]),
        ("amount in (1, 'x')", 14, ["'in'", "long with string"]),
        ("true < false", 5, ["cannot order booleans"]),
        ("status > 1", 7, ["cannot compare string with long"]),
        ("if(amount, 1, 2)", 3, ["condition of if()", "boolean", "long 'amount'"]),
        ("coalesce(amount, status)", 0, ["coalesce()", "long at position 9", "string"]),
        ("substr(status, amount, 1)", 15, ["start of substr()", "long literal", "'amount'"]),
        ("substr(status, -1, 1)", 0, ["start >= 0"]),
        ("contains(status, status)", 17, ["second argument of contains()", "string literal"]),
        ("-status", 1, ["unary '-'", "string 'status'"]),
        ("'abc", 0, ["unexpected character", "never closed"]),
        ("'a\\qb'", 2, ["unknown escape '\\q'"]),
        ("raw", 0, ["'raw'", "Avro type 'bytes'", "usable types"]),
        ("99999999999999999999", 0, ["out of range for long"]),
        ("-" * 300 + "amount", 200, ["nests deeper than 200", "split it"]),
        ("null", 0, ["always null", "to_double(null)"]),
        ("", 0, ["empty expression"]),
    ],
)
def test_compile_errors_name_the_token_and_position(
    text: str, position: int, fragments: list[str]
) -> None:
    with pytest.raises(DefinitionError) as info:
        compile_expression(text, {"amount": "long", "status": "string", "raw": "bytes"})
    error = info.value
    assert isinstance(error, ExpressionError)
    assert (error.position, error.expression) == (position, text)
    for fragment in [f"position {position}" * bool(text), *fragments]:
        assert fragment in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "().__class__",
        "__import__('os')",
        "eval('1')",
        "open('/etc/passwd')",
        "lambda: 1",
        "[x for x in l]",
        "l.__class__",
        "getattr(l, 'x')",
        "{}",
        "s[0]",
        "f'{l}'",
        "l; l",
        "#",
    ],
)
def test_python_is_not_reachable(text: str) -> None:
    # ``l.__class__`` reads as a nested field name, looked up among the fields only.
    with pytest.raises(ExpressionError, match="unexpected|unknown function|unknown field"):
        compile_expression(text, FIELDS)


EVENTS = pa.table(
    {
        "amount": pa.array([10, 20, None, 40, 50], pa.int32()),
        "fx_rate": [1.1, 0.5, 2.0, None, 1.0],
        "status": ["approved", "declined", "approved", "approved", None],
    }
)
EVENT_TYPES = {"amount": "int", "fx_rate": "double", "status": "string"}
TRANSFORMS = {"amount_usd": "amount * fx_rate", "big": "amount_usd > 10", "status": "upper(status)"}


def test_transforms_chain_then_filter_drops_false_and_null_rows() -> None:
    transforms = compile_transforms(EVENT_TYPES, TRANSFORMS)
    assert {name: e.type for name, e in transforms.items()} == {
        "amount_usd": "double",
        "big": "boolean",
        "status": "string",
    }
    keep = compile_expression("status == 'APPROVED' and big", output_types(EVENT_TYPES, TRANSFORMS))
    out = apply_filter_and_transforms(EVENTS, keep, transforms)
    # row 2 is false (declined), rows 3 and 4 null (no amount, no rate), row 5 null status
    assert out.column_names == ["amount", "fx_rate", "status", "amount_usd", "big"]
    assert out.to_pydict() == {
        "amount": [10],
        "fx_rate": [1.1],
        "status": ["APPROVED"],
        "amount_usd": [pytest.approx(11.0)],
        "big": [True],
    }
    assert out.schema.types == [pa.int32(), pa.float64(), pa.string(), pa.float64(), pa.bool_()]
    everything = apply_filter_and_transforms(EVENTS, None, transforms)["status"].to_pylist()
    assert everything == ["APPROVED", "DECLINED", "APPROVED", "APPROVED", None]


def test_filter_must_be_boolean_and_transform_errors_name_the_transform() -> None:
    with pytest.raises(ExpressionError, match="expected boolean"):
        apply_filter_and_transforms(EVENTS, compile_expression("amount", EVENT_TYPES), {})
    assert output_types(EVENT_TYPES, TRANSFORMS) == {
        **EVENT_TYPES,
        "amount_usd": "double",
        "big": "boolean",
        "status": "string",
    }
    with pytest.raises(ExpressionError, match="transform 'later': unknown field 'amout'") as info:
        output_types(EVENT_TYPES, {"ok": "amount + 1", "later": "amout * 2"})
    assert info.value.position == 0
    with pytest.raises(ExpressionError, match="unknown field 'b'"):  # no forward references
        output_types(EVENT_TYPES, {"a": "b + 1", "b": "amount"})
    with pytest.raises(ExpressionError, match="no column 'fx_rate'"):
        compile_expression("fx_rate", EVENT_TYPES).evaluate(EVENTS.drop_columns(["fx_rate"]))


# ---------------------------------------------------------------- reference interpreter

Row = dict[str, Any]
Node = tuple[str, Callable[[Row], Any]]  # (text, row -> value)
RANDOM_TYPES = {
    "l": "long",
    "m": "long",
    "d": "double",
    "s": "string",
    "t": "string",
    "b": "boolean",
    "c": "boolean",
    "ts": "long",
}
STRINGS = ["", "a", "Ab", " b ", "é", "12", "-3.5", "it's"]
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def strict(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *xs: None if any(x is None for x in xs) else f(*xs)


def wrap(n: int) -> int:  # two's complement, as Arrow's unchecked kernels
    return (n + 2**63) % 2**64 - 2**63


def mixed(f: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Arrow compares a long with a double as two doubles."""
    return lambda x, y: f(float(x), float(y)) if float in (type(x), type(y)) else f(x, y)


def part(name: str) -> Callable[[int], Any]:
    def get(ms: int) -> Any:
        if not -62_135_596_800_000 <= ms <= 253_402_300_799_999:  # years 1..9999 only
            return None
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        return t.weekday() if name == "weekday" else getattr(t, name)

    return get


def parse(pattern: re.Pattern[str], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda x: convert(x.strip()) if pattern.fullmatch(x.strip()) else None


DOUBLE_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda x, y: None if y == 0 else x / y,
    "%": lambda x, y: None if y == 0 else math.fmod(x, y),
}
COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">=": operator.ge}
# result kind -> (template, argument kinds, reference). Argument kinds: l d s b (a subexpression
# of that type), n (long or double), x (the result kind), i (0..3), p (a prefix), v (int list).
OPS: dict[str, list[tuple[str, str, Callable[..., Any]]]] = {
    "long": [
        *[
            (f"({{}} {o} {{}})", "ll", strict(lambda x, y, f=f: wrap(f(x, y))))
            for o, f in {"+": operator.add, "-": operator.sub, "*": operator.mul}.items()
        ],
        (
            "({} % {})",
            "ll",
            strict(lambda x, y: None if y == 0 else -(-x % abs(y)) if x < 0 else x % abs(y)),
        ),  # the sign of the dividend
        ("(-{})", "l", strict(lambda x: wrap(-x))),
        ("abs({})", "l", strict(lambda x: wrap(abs(x)))),
        ("length({})", "s", strict(len)),
        ("hour({})", "l", strict(part("hour"))),
        ("day_of_week({})", "l", strict(part("weekday"))),
        ("year({})", "l", strict(part("year"))),
        ("to_long({})", "d", strict(lambda x: int(x) if -(2**63) <= x < 2**63 else None)),
        ("to_long({})", "s", strict(parse(re.compile(r"[+-]?\d+"), int))),
    ],
    "double": [
        *[
            (f"({{}} {o} {{}})", "nd", strict(lambda x, y, f=f: f(float(x), y)))
            for o, f in DOUBLE_OPS.items()
        ],
        ("({} / {})", "ll", strict(lambda x, y: None if y == 0 else float(x) / float(y))),
        ("round({})", "d", strict(lambda x: float(Decimal(x).quantize(1, ROUND_HALF_UP)))),
        ("floor({})", "d", strict(lambda x: float(math.floor(x)))),
        ("sqrt({})", "d", strict(lambda x: None if x < 0 else math.sqrt(x))),
        ("to_double({})", "l", strict(float)),
        ("to_double({})", "s", strict(parse(NUMBER, float))),
    ],
    "string": [
        ("({} + {})", "ss", strict(operator.add)),
        ("lower({})", "s", strict(str.lower)),
        ("upper({})", "s", strict(str.upper)),
        ("trim({})", "s", strict(str.strip)),
        ("substr({}, {}, {})", "sii", strict(lambda x, i, n: x[i : i + n])),
        ("concat({}, {})", "ss", lambda x, y: (x or "") + (y or "")),
        ("to_string({})", "l", strict(str)),
        ("to_string({})", "b", strict(lambda x: str(x).lower())),
    ],
    "boolean": [
        *[
            (f"({{}} {o} {{}})", k, strict(mixed(f)))
            for o, f in COMPARISONS.items()
            for k in ("nn", "ss")
        ],
        (
            "({} and {})",
            "bb",
            lambda x, y: False if False in (x, y) else None if None in (x, y) else True,
        ),
        (
            "({} or {})",
            "bb",
            lambda x, y: True if True in (x, y) else None if None in (x, y) else False,
        ),
        ("(not {})", "b", strict(operator.not_)),
        ("({} is null)", "n", lambda x: x is None),
        ("({} is not null)", "s", lambda x: x is not None),
        ("({} in {})", "lv", strict(lambda x, vs: x in vs)),
        ("starts_with({}, {})", "sp", strict(str.startswith)),
    ],
}
COMMON: list[tuple[str, str, Callable[..., Any]]] = [
    ("if({}, {}, {})", "bxx", lambda c, a, b: a if c is True else b),
    ("coalesce({}, {})", "xx", lambda a, b: b if a is None else a),
]


def lit(value: Any) -> Node:
    if isinstance(value, str):
        return ("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'", lambda row: value)
    if isinstance(value, tuple):
        return (f"({', '.join(map(str, value))})", lambda row: value)
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return (f"({text})", lambda row: value)


def col(name: str) -> Node:
    return (f"`{name}`" if name == "ts" else name, lambda row: row[name])


def combine(template: str, reference: Callable[..., Any], args: tuple[Node, ...]) -> Node:
    return template.format(*(a[0] for a in args)), lambda r: reference(*(a[1](r) for a in args))


@cache
def nodes(kind: str, depth: int) -> st.SearchStrategy[Node]:
    leaves = {
        "long": st.sampled_from(["l", "m", "ts"]).map(col) | st.integers(-5, 5).map(lit),
        "double": st.just("d").map(col) | st.sampled_from([0.0, 0.5, -1.5, 2.25]).map(lit),
        "string": st.sampled_from(["s", "t"]).map(col) | st.sampled_from(STRINGS).map(lit),
        "boolean": st.sampled_from(["b", "c"]).map(col) | st.booleans().map(lit),
    }[kind]
    if depth == 0:
        return leaves
    kinds = {"l": "long", "d": "double", "s": "string", "b": "boolean", "x": kind}
    special = {
        "n": nodes("long", depth - 1) | nodes("double", depth - 1),
        "i": st.integers(0, 3).map(lit),
        "p": st.sampled_from(["", "a", "A"]).map(lit),
        "v": st.lists(st.integers(-3, 3), min_size=1, max_size=3).map(tuple).map(lit),
    }
    return st.one_of(
        [leaves]
        + [
            st.tuples(
                *[special[k] if k in special else nodes(kinds[k], depth - 1) for k in args]
            ).map(partial(combine, template, reference))
            for template, args, reference in OPS[kind] + COMMON
        ]
    )


ROWS = st.lists(
    st.fixed_dictionaries(
        {
            name: st.none() | values
            for name, values in {
                "l": st.integers(-9, 9),
                "m": st.integers(-3, 3),
                "d": st.sampled_from([0.0, 1.5, -2.5, 0.1]),
                "s": st.sampled_from(STRINGS),
                "t": st.sampled_from(STRINGS),
                "b": st.booleans(),
                "c": st.booleans(),
                "ts": st.sampled_from([TS, 0, -1, 951_782_400_000]),
            }.items()
        }
    ),
    min_size=1,
    max_size=6,
)


def same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-12)
    return x == y and type(x) is type(y)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(OPS)), data=st.data(), rows=ROWS)
def test_vectorised_matches_row_by_row_reference(
    kind: str, data: st.DataObject, rows: list[Row]
) -> None:
    text, reference = data.draw(nodes(kind, 3), label="expression")
    expression = compile_expression(text, RANDOM_TYPES)
    assert expression.type == kind
    schema = pa.schema([(name, ARROW[t]) for name, t in RANDOM_TYPES.items()])
    got = expression.evaluate(pa.Table.from_pylist(rows, schema=schema)).to_pylist()
    expected = [reference(row) for row in rows]
    assert len(got) == len(rows) and all(same(g, e) for g, e in zip(got, expected, strict=True)), (
        text,
        got,
        expected,
    )

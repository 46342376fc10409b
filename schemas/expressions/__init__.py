r"""The safe expression language of feature-set filters and transforms.

A feature set writes ``filter: "status == 'approved'"`` and
``transforms: {amount_usd: "amount * fx_rate"}``. User text is never handed to ``eval``: it
is parsed once by a fixed LALR grammar (lark), type-checked against the source's Avro field
types when the definition is applied, and turned into a tree of ``pyarrow.compute`` calls
that runs on whole Arrow batches. Every type error is therefore found before the first event
arrives; evaluation never raises on data (division by zero gives null, a bad string-to-number
conversion gives null).

Grammar, loosest binding first (``a < b < c`` is a syntax error: comparisons do not chain)::

    expr    := expr 'or' expr | expr 'and' expr | 'not' expr
             | sum ('==' | '!=' | '<' | '<=' | '>' | '>=') sum
             | sum ['not'] 'in' '(' expr {',' expr} ')'
             | sum 'is' ['not'] 'null'
             | sum
    sum     := sum ('+' | '-') product | product
    product := product ('*' | '/' | '%') unary | unary
    unary   := '-' unary | atom
    atom    := NUMBER | STRING | 'true' | 'false' | 'null'
             | NAME | `any field name` | NAME '(' [expr {',' expr}] ')' | '(' expr ')'

``NUMBER`` is ``12`` (long) or ``1.5``, ``.5``, ``1e3`` (double). ``STRING`` is single- or
double-quoted with the escapes ``\\ \' \" \n \t \r \0 \uXXXX``. Keywords are lower case;
a field named like a keyword is written in backquotes.

Types are ``boolean``, ``long``, ``double`` and ``string`` (Avro ``int`` reads as long and
``float`` as double). Semantics, chosen to match SQL where SQL has an answer:

* nulls propagate through operators and functions; ``and``/``or``/``not`` use Kleene
  three-valued logic; ``x == null`` is refused (it is always null): write ``x is null``.
  NaN is a value, not null.
* long op long stays long (``+ - * %``; overflow wraps like Java) except ``/``, which always
  gives double; long mixed with double gives double; ``x / 0`` and ``x % 0`` give null;
  ``%`` takes the sign of the dividend (SQL, not Python); ``+`` on two strings concatenates.
* ``if(cond, a, b)`` gives ``b`` when ``cond`` is false or null, like SQL ``CASE WHEN``;
  ``coalesce(a, b, ...)`` gives the first non-null argument.

Functions: ``abs``, ``round(x[, digits])`` (half away from zero), ``floor``, ``ceil``,
``sqrt`` (null for negatives), ``lower``, ``upper``, ``trim``, ``length``,
``starts_with(s, 'prefix')``, ``ends_with(s, 'suffix')``, ``contains(s, 'sub')`` (the second
argument is a string literal), ``substr(s, start, length)`` (0-based literals),
``concat(s, ...)`` (nulls count as empty strings), ``to_string``, ``to_double``, ``to_long``
(null when the value does not convert; doubles truncate toward zero), and on epoch-millisecond
longs, in UTC: ``year``, ``month``, ``day_of_month``, ``day_of_week`` (Monday = 0), ``hour``,
``minute``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from schemas.errors import DefinitionError

__all__ = [
    "Expression",
    "ExpressionError",
    "apply_filter_and_transforms",
    "compile_expression",
    "compile_transforms",
    "output_types",
]

# pyarrow ships no type information: an Arrow datum (scalar, array or chunked array) is Any.
_Datum = Any
_Run = Callable[["_Frame"], _Datum]

_GRAMMAR: Final = r"""
?start: or_expr
?or_expr: and_expr | or_expr OR and_expr                    -> logical
?and_expr: not_expr | and_expr AND not_expr                 -> logical
?not_expr: comparison | NOT not_expr                        -> negation
?comparison: sum
    | sum COMPARE sum                                       -> compare
    | sum NOT? IN _LPAR arguments _RPAR                     -> membership
    | sum IS NOT? NULL                                      -> null_test
?sum: product | sum (PLUS | MINUS) product                  -> arith
?product: unary | product MUL_OP unary                      -> arith
?unary: atom | MINUS unary                                  -> minus
?atom: NUMBER -> number | STRING -> string | (TRUE | FALSE) -> boolean | NULL -> null
    | (NAME | QUOTED_NAME)                                  -> field
    | NAME _LPAR [arguments] _RPAR                          -> call
    | _LPAR or_expr _RPAR
arguments: or_expr (_COMMA or_expr)*
OR: "or"
AND: "and"
NOT: "not"
IN: "in"
IS: "is"
NULL: "null"
TRUE: "true"
FALSE: "false"
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
PLUS: "+"
MINUS: "-"
MUL_OP: "*" | "/" | "%"
_LPAR: "("
_RPAR: ")"
_COMMA: ","
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/s
QUOTED_NAME: /`[^`]+`/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%import common.WS
%ignore WS
"""

# Built once at import: the grammar is fixed, and parsing is the only thing done per text.
_PARSER: Final = Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True)

_ARROW_TYPES: Final[Mapping[str, _Datum]] = {
    "boolean": pa.bool_(), "long": pa.int64(), "double": pa.float64(), "string": pa.string(),
    "null": pa.null(),
}
_AVRO_TYPES: Final[Mapping[str, str]] = {
    "boolean": "boolean", "int": "long", "long": "long",
    "float": "double", "double": "double", "string": "string",
}
_NUMERIC: Final = frozenset({"long", "double"})
_INT64_MAX: Final = 2**63 - 1
_MAX_DEPTH: Final = 200
_VALUES: Final = frozenset({"NUMBER", "STRING", "TRUE", "FALSE", "NULL", "NAME", "QUOTED_NAME"})
_BINARY: Final = frozenset({"OR", "AND", "COMPARE", "IN", "IS", "PLUS", "MUL_OP"})
_TERMINAL_NAMES: Final[Mapping[str, str]] = {
    "_RPAR": "')'", "_COMMA": "','", "NOT": "'not'", "NULL": "'null'", "IN": "'in'",
    "$END": "the end of the expression",
}
_CHARACTER_HINTS: Final[Mapping[str, str]] = {
    "=": "compare with '==', not '='", "&": "write 'and', not '&&'", "|": "write 'or', not '||'",
    "!": "write 'not x' or 'a != b'", "[": "indexing is not part of the language",
    ".": "attribute access and methods are not part of the language; call a function",
    **dict.fromkeys("'\"`", "a string or `name` is never closed; close it with the same quote"),
}
_ESCAPES: Final[Mapping[str, str]] = {
    "\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0",
}


class ExpressionError(DefinitionError):
    """An expression does not parse or does not type-check.

    Raised when a definition is applied, never while events are processed.

    Attributes:
        position: 0-based character offset of the offending token in ``expression``, or
            ``None`` when the error is about the whole expression.
        expression: the text at fault, when known.
    """

    def __init__(
        self, message: str, *, position: int | None = None, expression: str | None = None
    ) -> None:
        """Keep the position apart from the message so tools can point at it."""
        super().__init__(message)
        self.position = position
        self.expression = expression


@dataclass(frozen=True, kw_only=True)
class Expression:
    """A compiled, type-checked expression; build it with :func:`compile_expression`.

    Attributes:
        text: the source text.
        type: the result type: ``"boolean"``, ``"long"``, ``"double"`` or ``"string"``.
            Callers check it (a filter must be boolean) because only they know the role.
        fields: the input fields it reads; :meth:`evaluate` needs these columns.
    """

    text: str
    type: str
    fields: frozenset[str]
    _run: _Run = field(repr=False, compare=False)
    _field_types: tuple[tuple[str, str], ...] = field(repr=False, compare=False, default=())

    def evaluate(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        """Compute the expression for every row of ``table``, vectorised.

        Args:
            table: holds at least the columns in :attr:`fields`; integer and float columns
                of other widths are widened to int64 / float64 first.

        Returns:
            One value per row (length ``table.num_rows``), of the Arrow type matching
            :attr:`type`; a constant expression is broadcast.

        Raises:
            ExpressionError: a needed column is missing or has an incompatible Arrow type;
                this is a caller bug, not bad data.
        """
        missing = sorted(self.fields - set(table.column_names))
        if missing:
            message = (
                f"table has no column {', '.join(map(repr, missing))} needed by expression "
                f"{self.text!r}; columns: {', '.join(table.column_names) or '(none)'}"
            )
            raise ExpressionError(message, expression=self.text)
        result = self._run(_Frame(table, self.text))
        arrow_type = _ARROW_TYPES[self.type]
        if isinstance(result, pa.Scalar):
            return pa.repeat(result.cast(arrow_type), table.num_rows)
        return result if result.type == arrow_type else pc.cast(result, arrow_type)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as the text and field types: the compiled closures cannot be pickled."""
        return (compile_expression, (self.text, dict(self._field_types)))


def compile_expression(text: str, field_types: Mapping[str, str]) -> Expression:
    """Parse and type-check ``text`` once, so that evaluation cannot fail on types.

    Args:
        text: the expression, in the language described in this module's docstring.
        field_types: the fields it may read, mapped to Avro primitive type names
            (``string``, ``int``, ``long``, ``float``, ``double``, ``boolean``). Fields of
            other types may be listed; referring to one is an error.

    Returns:
        The compiled :class:`Expression`.

    Raises:
        ExpressionError: bad syntax, unknown field or function, or a type mismatch; the
            message names what was found, what was expected and a hint, and ``position``
            points at it.
    """
    if not text.strip():
        message = "empty expression at position 0; expected a value, e.g. amount * 2"
        raise ExpressionError(message, position=0, expression=text)
    compiler = _Compiler(text, field_types)
    typed = compiler.compile(_parse(text))
    if typed.type == "null":
        message = (
            f"expression {text!r} at position 0 is always null and has no type; "
            "hint: give it one, e.g. to_double(null) or to_string(null)"
        )
        raise ExpressionError(message, position=0, expression=text)
    field_types = {name: field_types[name] for name in sorted(compiler.fields)}
    return Expression(text=text, type=typed.type, fields=frozenset(field_types), _run=typed.run,
                      _field_types=tuple(field_types.items()))


def apply_filter_and_transforms(
    table: pa.Table, filter: Expression | None, transforms: Mapping[str, Expression]
) -> pa.Table:
    """Add the transform columns, then keep the rows where the filter is true.

    Transforms run first and in order, so a later transform may read an earlier one's output
    and the filter sees both the source fields and every transform output (``filter:
    "amount_usd > 10"`` works). Each output is appended as a new column, or replaces the
    column of the same name in place.

    Args:
        table: one batch of decoded events.
        filter: a boolean expression, or ``None`` to keep every row. A null result drops
            the row, as SQL ``WHERE`` does.
        transforms: output column name -> expression, in evaluation order.

    Returns:
        The filtered table with the transform columns.

    Raises:
        ExpressionError: the filter is not boolean, or a column is missing.
    """
    if filter is not None and filter.type != "boolean":
        message = (
            f"filter {filter.text!r} gives {filter.type}; expected boolean; "
            "hint: compare it, e.g. x > 0 or x is not null"
        )
        raise ExpressionError(message, position=0, expression=filter.text)
    for name, expression in transforms.items():
        column, names = expression.evaluate(table), table.column_names
        table = (table.set_column(names.index(name), name, column) if name in names
                 else table.append_column(name, column))
    if filter is None:
        return table
    return table.filter(filter.evaluate(table), null_selection_behavior="drop")


def compile_transforms(
    field_types: Mapping[str, str], transforms: Mapping[str, str]
) -> dict[str, Expression]:
    """Compile transforms in order, each seeing the source fields and the earlier outputs.

    Args:
        field_types: source field name -> Avro type name.
        transforms: output name -> expression text, in evaluation order.

    Returns:
        Output name -> compiled expression, in the same order, ready for
        :func:`apply_filter_and_transforms`.

    Raises:
        ExpressionError: a transform does not compile; the message names the transform.
    """
    types, compiled = dict(field_types), {}
    for name, text in transforms.items():
        try:
            compiled[name] = compile_expression(text, types)
        except ExpressionError as exc:
            message = f"transform {name!r}: {exc}"
            raise ExpressionError(message, position=exc.position, expression=text) from exc
        types[name] = compiled[name].type
    return compiled


def output_types(field_types: Mapping[str, str], transforms: Mapping[str, str]) -> dict[str, str]:
    """Type the fields available after the transforms, so features on them can be checked.

    Args:
        field_types: source field name -> Avro type name.
        transforms: output name -> expression text, in evaluation order.

    Returns:
        ``field_types`` extended (or overridden) with each transform output's type.

    Raises:
        ExpressionError: a transform does not compile; the message names the transform.
    """
    compiled = compile_transforms(field_types, transforms)
    return {**field_types, **{name: expression.type for name, expression in compiled.items()}}


# --------------------------------------------------------------------------- parsing


def _parse(text: str) -> Tree[Token]:
    try:
        return _PARSER.parse(text)
    except UnexpectedCharacters as exc:
        position = exc.pos_in_stream or 0
        char = text[position]
        hint = _CHARACTER_HINTS.get(char, "remove or quote it")
        message = f"unexpected character {char!r} at position {position}; {hint}"
        raise ExpressionError(message, position=position, expression=text) from exc
    except UnexpectedToken as exc:
        raise _token_error(text, exc) from exc


def _token_error(text: str, exc: UnexpectedToken) -> ExpressionError:
    # LALR's own expected set merges look-aheads of unrelated contexts; replaying the parser
    # state gives exactly the tokens that could follow.
    accepts: Callable[[], set[str]] = exc.interactive_parser.accepts
    expected = _describe_expected(accepts())
    token, end = exc.token, exc.token.type == "$END"
    tokens = list(_PARSER.lex(text if end else text[: token.start_pos]))
    last, unclosed = (tokens[-1] if tokens else None), _unclosed(tokens)
    if not end:
        position = token.start_pos or 0
        message = f"unexpected {token.value!r} at position {position}; expected {expected}"
        if token.type == "COMPARE":
            message += "; hint: comparisons do not chain, write 'a < b and b < c'"
        elif token.type == "_RPAR" and last is not None and last.type == "_LPAR":
            message += "; hint: '()' holds no value"
        elif token.type == "_RPAR" and unclosed is None:
            message += "; hint: this ')' closes nothing"
    elif last is not None and last.type in (_BINARY | {"MINUS", "NOT", "_COMMA", "_LPAR"}):
        position = last.start_pos or 0
        message = (
            f"expression ends after {last.value!r} at position {position}; "
            f"expected {expected} after it"
        )
    elif unclosed is not None:
        position = unclosed
        message = f"unclosed '(' at position {position}; expected ')' before the end"
    else:
        position = len(text.rstrip())
        message = f"unexpected end of expression at position {position}; expected {expected}"
    return ExpressionError(message, position=position, expression=text)


def _unclosed(tokens: Sequence[Token]) -> int | None:
    """Position of the last '(' that no ')' closes, if any."""
    opened: list[int] = []
    for token in tokens:
        if token.type == "_LPAR":
            opened.append(token.start_pos or 0)
        elif token.type == "_RPAR" and opened:
            opened.pop()
    return opened[-1] if opened else None


def _describe_expected(expected: set[str]) -> str:
    parts = []
    if expected & _BINARY:  # after a complete value
        parts, expected = ["an operator"], expected - _BINARY
    elif expected & (_VALUES - {"NULL"}):  # where a value must start
        parts = ["a value (number, string, field, function call or '(')"]
        expected = expected - _VALUES
    expected = expected - {"MINUS", "NOT", "_LPAR"} if parts else expected
    return " or ".join(parts + sorted(_TERMINAL_NAMES.get(name, name) for name in expected))


def _unescape(raw: str, position: int, text: str) -> str:
    def replace_escape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _ESCAPES or len(code) == 5:
            return _ESCAPES.get(code) or chr(int(code[1:], 16))
        at = position + 1 + match.start()
        message = (
            f"unknown escape '\\{code}' at position {at}; expected one of "
            "\\\\ \\' \\\" \\n \\t \\r \\0 \\uXXXX; hint: write '\\\\' for a backslash"
        )
        raise ExpressionError(message, position=at, expression=text)

    return _ESCAPE.sub(replace_escape, raw[1:-1])


_ESCAPE: Final = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


# --------------------------------------------------------------------------- evaluation


class _Frame:
    """One evaluation: the table, with columns cast to the canonical Arrow types once."""

    def __init__(self, table: pa.Table, text: str) -> None:
        self.table, self.text = table, text
        self._columns: dict[str, _Datum] = {}

    def column(self, name: str, type_name: str) -> _Datum:
        if name not in self._columns:
            column, target = self.table.column(name), _ARROW_TYPES[type_name]
            if column.type != target:
                try:
                    column = pc.cast(column, target, safe=not pa.types.is_floating(target))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    message = (
                        f"column {name!r} has Arrow type {column.type}, which does not "
                        f"convert to {type_name} as expression {self.text!r} expects"
                    )
                    raise ExpressionError(message, expression=self.text) from exc
            self._columns[name] = column
        return self._columns[name]


def _null_of(type_name: str) -> _Datum:
    return pa.scalar(None, _ARROW_TYPES[type_name])


def _divide(a: _Datum, b: _Datum) -> _Datum:
    # Arrow gives inf/NaN (doubles) or raises (integers) on a zero divisor; we give null.
    return pc.if_else(pc.equal(b, 0), _null_of("double"), pc.divide(a, b))


def _remainder(a: _Datum, b: _Datum) -> _Datum:
    zero = pc.equal(b, 0)
    safe = pc.if_else(zero, pa.scalar(1, b.type), b)
    return pc.if_else(zero, pa.scalar(None, b.type), pc.remainder(a, safe))


def _sqrt(x: _Datum) -> _Datum:
    return pc.if_else(pc.less(x, 0.0), _null_of("double"), pc.sqrt(x))


def _string_to_long(s: _Datum) -> _Datum:
    # Arrow's cast raises on a bad string; validate first so bad data becomes null instead.
    s = pc.replace_substring_regex(pc.utf8_trim_whitespace(s), r"^\+", "")
    digits = pc.replace_substring_regex(s, r"^-?0*", "")
    size = pc.utf8_length(digits)
    limit = pc.if_else(pc.starts_with(s, "-"), "9223372036854775808", "9223372036854775807")
    fits = pc.or_(pc.less(size, 19), pc.and_(pc.equal(size, 19), pc.less_equal(digits, limit)))
    valid = pc.and_(pc.match_substring_regex(s, r"^-?\d+$"), fits)
    return pc.cast(pc.if_else(valid, s, _null_of("string")), pa.int64())


def _string_to_double(s: _Datum) -> _Datum:
    s = pc.utf8_trim_whitespace(s)
    valid = pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    value = pc.cast(pc.if_else(valid, s, _null_of("string")), pa.float64())
    return pc.if_else(pc.is_finite(value), value, _null_of("double"))


def _to_double(x: _Datum) -> _Datum:
    if x.type == pa.string():
        return _string_to_double(x)
    return pc.cast(x, pa.float64(), safe=False)  # longs beyond 2**53 round instead of raising


def _to_long(x: _Datum) -> _Datum:
    if x.type == pa.string():
        return _string_to_long(x)
    if x.type != pa.float64():
        return pc.cast(x, pa.int64())
    # NaN, infinities and out-of-range values would wrap silently in an unsafe cast.
    in_range = pc.and_(pc.greater_equal(x, -(2.0**63)), pc.less(x, 2.0**63))
    return pc.cast(pc.if_else(in_range, x, _null_of("double")), pa.int64(), safe=False)


def _time_part(kernel: Callable[[_Datum], _Datum]) -> Callable[[_Datum], _Datum]:
    def run(ms: _Datum) -> _Datum:
        # Arrow's calendar arithmetic overflows silently far out; keep years 1..9999 (ISO).
        valid = pc.and_(pc.greater_equal(ms, _MIN_MS), pc.less_equal(ms, _MAX_MS))
        ms = pc.if_else(valid, ms, _null_of("long"))
        return pc.cast(kernel(pc.cast(ms, pa.timestamp("ms"))), pa.int64())

    return run


_MIN_MS: Final = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


# name -> (parameter type, where "double" takes any number; result type; kernel)
_UNARY: Final[Mapping[str, tuple[str, str, Callable[[_Datum], _Datum]]]] = {
    "sqrt": ("double", "double", _sqrt),
    "lower": ("string", "string", pc.utf8_lower),
    "upper": ("string", "string", pc.utf8_upper),
    "trim": ("string", "string", pc.utf8_trim_whitespace),
    "length": ("string", "long", lambda s: pc.cast(pc.utf8_length(s), pa.int64())),
    **{
        name: ("long", "long", _time_part(kernel))
        for name, kernel in [
            ("year", pc.year), ("month", pc.month), ("day_of_month", pc.day),
            ("day_of_week", pc.day_of_week), ("hour", pc.hour), ("minute", pc.minute),
        ]  # Arrow's day_of_week counts from Monday = 0
    },
}
_CONVERSIONS: Final[Mapping[str, tuple[str, Callable[[_Datum], _Datum]]]] = {
    "to_string": ("string", lambda x: pc.cast(x, pa.string())),
    "to_double": ("double", _to_double),
    "to_long": ("long", _to_long),
}
_MATCHERS: Final[Mapping[str, Callable[..., _Datum]]] = {
    "starts_with": pc.starts_with, "ends_with": pc.ends_with, "contains": pc.match_substring,
}
# name -> (fewest, most arguments; None for any number)
_ARITY: Final[Mapping[str, tuple[int, int | None]]] = {
    **{name: (1, 1) for name in ("abs", "floor", "ceil", *_UNARY, *_CONVERSIONS)},
    **{name: (2, 2) for name in _MATCHERS},
    "round": (1, 2), "substr": (3, 3), "if": (3, 3), "concat": (1, None), "coalesce": (1, None),
}
_ARITHMETIC: Final[Mapping[str, Callable[[_Datum, _Datum], _Datum]]] = {
    "+": pc.add, "-": pc.subtract, "*": pc.multiply, "/": _divide, "%": _remainder,
}
_COMPARISONS: Final[Mapping[str, Callable[[_Datum, _Datum], _Datum]]] = {
    "==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}


# --------------------------------------------------------------------------- type checking


@dataclass(frozen=True)
class _Typed:
    """A checked subexpression: its type, how to compute it, and its span in the text."""

    type: str
    run: _Run
    position: int = 0
    end: int = 0
    is_literal: bool = False
    value: object = None


def _constant(type_name: str, value: object) -> _Typed:
    scalar = pa.scalar(value, _ARROW_TYPES[type_name])
    return _Typed(type_name, lambda frame: scalar, is_literal=True, value=value)


_NULL: Final = _Typed("null", lambda frame: _null_of("null"), is_literal=True)


def _token(node: Tree[Token], index: int) -> Token:
    child = node.children[index]
    if not isinstance(child, Token):  # pragma: no cover - the grammar guarantees a token
        message = f"expected a token in {node.data}, got {child!r}"
        raise TypeError(message)
    return child


class _Compiler:
    """Walks the lark tree once, checking types and building the evaluation closures."""

    def __init__(self, text: str, field_types: Mapping[str, str]) -> None:
        self.text, self.field_types = text, field_types
        self.fields: set[str] = set()
        self.depth = 0

    def error(self, message: str, position: int) -> ExpressionError:
        return ExpressionError(message, position=position, expression=self.text)

    def compile(self, node: Tree[Token] | Token) -> _Typed:
        if isinstance(node, Token):  # pragma: no cover - every token is wrapped by a rule
            message = f"unexpected {node.value!r}"
            raise self.error(message, node.start_pos or 0)
        handler: Callable[[Tree[Token]], _Typed] = getattr(self, f"_{node.data}")
        start, end = getattr(node.meta, "start_pos", 0), getattr(node.meta, "end_pos", 0)
        self.depth += 1  # compiling and evaluating both recurse once per level
        if self.depth > _MAX_DEPTH:
            message = (
                f"expression nests deeper than {_MAX_DEPTH} operations at position {start}; "
                "hint: split it into several transforms"
            )
            raise self.error(message, start)
        typed = replace(handler(node), position=start, end=end)
        self.depth -= 1
        return typed

    def compile_all(self, node: Tree[Token] | Token | None) -> list[_Typed]:
        return [self.compile(child) for child in getattr(node, "children", [])]

    # ---- helpers

    def coerce(self, typed: _Typed, target: str) -> _Typed:
        if typed.type == target:
            return typed
        if typed.type == "null":
            return replace(typed, type=target, run=lambda frame: _null_of(target))
        inner = typed.run  # only long -> double gets here; beyond 2**53 it rounds, as in SQL
        return replace(typed, type=target, run=lambda f: _to_double(inner(f)), is_literal=False)

    def unify(self, items: Sequence[_Typed], what: str, position: int) -> str:
        kinds = {item.type for item in items} - {"null"}
        if len(kinds) <= 1:
            return kinds.pop() if kinds else "null"
        if kinds <= _NUMERIC:
            return "double"
        found = ", ".join(f"{item.type} at position {item.position}" for item in items)
        message = (
            f"{what} at position {position} mixes incompatible types ({found}); expected "
            "one type (long and double mix); hint: convert with to_string/to_double/to_long"
        )
        raise self.error(message, position)

    def expect(self, typed: _Typed, allowed: frozenset[str] | str, what: str) -> _Typed:
        """Check ``typed`` is one of ``allowed``; a null literal takes the (first) type."""
        allowed = frozenset({allowed}) if isinstance(allowed, str) else allowed
        if typed.type == "null":
            return self.coerce(typed, "double" if allowed == _NUMERIC else min(allowed))
        if typed.type not in allowed:
            message = (
                f"{what} at position {typed.position} must be {' or '.join(sorted(allowed))}; "
                f"found {typed.type} {self.text[typed.position : typed.end]!r}"
            )
            raise self.error(message, typed.position)
        return typed

    def literal(self, typed: _Typed, type_name: str, what: str) -> _Datum:
        if not typed.is_literal or typed.type != type_name or typed.value is None:
            message = (
                f"{what} at position {typed.position} must be a {type_name} literal; found "
                f"{self.text[typed.position : typed.end]!r}; hint: Arrow's kernel takes a "
                "fixed value, not one per row"
            )
            raise self.error(message, typed.position)
        return typed.value

    # ---- atoms (handlers are named after the grammar's rule aliases)

    def _number(self, node: Tree[Token]) -> _Typed:
        token = _token(node, 0)
        position, digits = token.start_pos or 0, token.value
        if any(c in digits for c in ".eE"):
            if float(digits) == float("inf"):
                message = f"number {digits} at position {position} is too large for a double"
                raise self.error(message, position)
            return _constant("double", float(digits))
        if int(digits) > _INT64_MAX:
            message = (
                f"integer {digits} at position {position} is out of range for long; "
                f"hint: write {digits}.0 for a double"
            )
            raise self.error(message, position)
        return _constant("long", int(digits))

    def _string(self, node: Tree[Token]) -> _Typed:
        token = _token(node, 0)
        return _constant("string", _unescape(token.value, token.start_pos or 0, self.text))

    def _boolean(self, node: Tree[Token]) -> _Typed:
        return _constant("boolean", _token(node, 0).type == "TRUE")

    def _null(self, node: Tree[Token]) -> _Typed:
        return _NULL

    def _field(self, node: Tree[Token]) -> _Typed:
        token = _token(node, 0)
        position = token.start_pos or 0
        name = token.value[1:-1] if token.type == "QUOTED_NAME" else token.value
        if name not in self.field_types:
            known = sorted(self.field_types)
            listed = ", ".join(known[:20]) + f", ... ({len(known) - 20} more)" * (len(known) > 20)
            message = f"unknown field {name!r} at position {position}; known fields: {listed}"
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif name in _ARITY:
                message += f"; hint: {name} is a function, call it as {name}(...)"
            raise self.error(message, position)
        avro = self.field_types[name]
        type_name = _AVRO_TYPES.get(avro) if isinstance(avro, str) else None
        if type_name is None:
            message = (
                f"field {name!r} at position {position} has Avro type {avro!r}, which "
                f"expressions cannot use; usable types: {', '.join(sorted(_AVRO_TYPES))}"
            )
            raise self.error(message, position)
        self.fields.add(name)
        return _Typed(type_name, lambda frame: frame.column(name, type_name))

    # ---- operators

    def _minus(self, node: Tree[Token]) -> _Typed:
        operand = self.expect(self.compile(node.children[1]), _NUMERIC, "operand of unary '-'")
        if operand.is_literal and isinstance(operand.value, int | float):
            return _constant(operand.type, -operand.value)  # so substr(s, -1, 2) sees a literal
        inner = operand.run
        return _Typed(operand.type, lambda frame: pc.negate(inner(frame)))

    def _arith(self, node: Tree[Token]) -> _Typed:
        left, right = self.compile(node.children[0]), self.compile(node.children[2])
        op = _token(node, 1)
        position, symbol, types = op.start_pos or 0, op.value, {left.type, right.type}
        if symbol == "+" and "string" in types and types <= {"string", "null"}:
            a, b = self.coerce(left, "string").run, self.coerce(right, "string").run
            return _Typed("string", lambda f: pc.binary_join_element_wise(a(f), b(f), ""))
        if not types <= _NUMERIC | {"null"}:
            message = (
                f"operator {symbol!r} at position {position} cannot combine {left.type} and "
                f"{right.type}; expected two numbers{' or two strings' * (symbol == '+')}; "
                "hint: convert with to_double(...), to_long(...) or to_string(...)"
            )
            raise self.error(message, position)
        target = "double" if symbol == "/" else self.unify([left, right], repr(symbol), position)
        return self.binary(target, target, left, right, _ARITHMETIC[symbol])

    def binary(self, result: str, operands: str, left: _Typed, right: _Typed,
               kernel: Callable[[_Datum, _Datum], _Datum]) -> _Typed:
        if operands == "null":
            return _NULL
        a, b = self.coerce(left, operands).run, self.coerce(right, operands).run
        return _Typed(result, lambda frame: kernel(a(frame), b(frame)))

    def _compare(self, node: Tree[Token]) -> _Typed:
        left, right = self.compile(node.children[0]), self.compile(node.children[2])
        op = _token(node, 1)
        position, symbol = op.start_pos or 0, op.value
        self.comparable(left, right, symbol, position)
        target = self.unify([left, right], repr(symbol), position)
        return self.binary("boolean", target, left, right, _COMPARISONS[symbol])

    def comparable(self, left: _Typed, right: _Typed, symbol: str, position: int) -> None:
        if "null" in (left.type, right.type):
            hint = "x is not null" if symbol == "!=" else "x is null"
            message = (
                f"comparison {symbol!r} at position {position} with null is always null; "
                f"hint: write {hint!r}"
            )
        elif left.type == "boolean" == right.type and symbol not in ("==", "!=", "in"):
            message = (
                f"operator {symbol!r} at position {position} cannot order booleans; "
                "expected '==' or '!='"
            )
        elif not ({left.type, right.type} <= _NUMERIC or left.type == right.type):
            message = (
                f"operator {symbol!r} at position {position} cannot compare {left.type} with "
                f"{right.type}; expected numbers with numbers, strings with strings or booleans "
                "with booleans; hint: convert with to_double(...) or to_string(...)"
            )
        else:
            return
        raise self.error(message, position)

    def _membership(self, node: Tree[Token]) -> _Typed:
        operand, items = self.compile(node.children[0]), self.compile_all(node.children[-1])
        negated = _token(node, 1).type == "NOT"
        position = _token(node, 2 if negated else 1).start_pos or 0
        for item in items:
            if item.type != "null" or operand.type == "null":
                self.comparable(operand, item, "in", item.position)
        target = self.unify([operand, *items], "'in' list", position)
        x = self.coerce(operand, target).run
        if all(item.is_literal and item.value is not None for item in items):
            value_set = pa.array([item.value for item in items], _ARROW_TYPES[target])

            def run(frame: _Frame) -> _Datum:
                values = x(frame)
                found = pc.is_in(values, value_set=value_set)
                return pc.if_else(pc.is_null(values), _null_of("boolean"), found)
        else:
            members = [self.coerce(item, target).run for item in items]

            def run(frame: _Frame) -> _Datum:
                # SQL semantics: true if any equals, else null if any comparison is null.
                values, result = x(frame), pa.scalar(False)
                for member in members:
                    result = pc.or_kleene(result, pc.equal(values, member(frame)))
                return result
        return _Typed("boolean", (lambda frame: pc.invert(run(frame))) if negated else run)

    def _null_test(self, node: Tree[Token]) -> _Typed:
        inner = self.compile(node.children[0]).run
        kernel = pc.is_valid if _token(node, 2).type == "NOT" else pc.is_null
        return _Typed("boolean", lambda frame: kernel(inner(frame)))

    def _logical(self, node: Tree[Token]) -> _Typed:
        op = _token(node, 1)
        what = f"operand of {op.value!r}"
        left = self.expect(self.compile(node.children[0]), "boolean", f"left {what}")
        right = self.expect(self.compile(node.children[2]), "boolean", f"right {what}")
        kernel = pc.and_kleene if op.type == "AND" else pc.or_kleene
        return self.binary("boolean", "boolean", left, right, kernel)

    def _negation(self, node: Tree[Token]) -> _Typed:
        inner = self.expect(self.compile(node.children[1]), "boolean", "operand of 'not'").run
        return _Typed("boolean", lambda frame: pc.invert(inner(frame)))

    # ---- function calls

    def _call(self, node: Tree[Token]) -> _Typed:
        name_token = _token(node, 0)
        name, position = name_token.value, name_token.start_pos or 0
        if name not in _ARITY:
            known = sorted(_ARITY)
            message = (
                f"unknown function {name!r} at position {position}; "
                f"known functions: {', '.join(known)}"
            )
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            raise self.error(message, position)
        args, (low, high) = self.compile_all(node.children[1]), _ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"{low} or more" if high is None else " or ".join(sorted({f"{low}", f"{high}"}))
            message = (
                f"function {name!r} at position {position} takes {wanted} argument"
                f"{'s' * (wanted != '1')}; got {len(args)}"
            )
            raise self.error(message, position)
        what = f"argument of {name}()"
        if name in _UNARY:
            param, result, kernel = _UNARY[name]
            allowed = _NUMERIC if param == "double" else param
            inner = self.coerce(self.expect(args[0], allowed, what), param).run
            return _Typed(result, lambda frame: kernel(inner(frame)))
        if name in _CONVERSIONS:
            result, convert = _CONVERSIONS[name]
            if args[0].type in ("null", result):
                return self.coerce(args[0], result)
            inner = args[0].run
            return _Typed(result, lambda frame: convert(inner(frame)))
        if name in _MATCHERS:
            matcher, s = _MATCHERS[name], self.expect(args[0], "string", what).run
            pattern = self.literal(args[1], "string", f"second argument of {name}()")
            return _Typed("boolean", lambda frame: matcher(s(frame), pattern=pattern))
        if name == "concat":  # nulls count as empty strings, as in PostgreSQL
            parts = [self.expect(arg, "string", what).run for arg in args]
            return _Typed("string", lambda f: pc.binary_join_element_wise(
                *[part(f) for part in parts], "", null_handling="replace", null_replacement=""
            ))
        if name in ("abs", "floor", "ceil", "round"):
            return self.numeric(name, args)
        if name == "substr":
            return self.substr(args, position)
        target = self.unify(args[1:] if name == "if" else args, f"{name}()", position)
        if target == "null":
            return _NULL
        if name == "coalesce":
            values = [self.coerce(arg, target).run for arg in args]
            return _Typed(target, lambda f: pc.coalesce(*[value(f) for value in values]))
        condition = self.expect(args[0], "boolean", "condition of if()").run
        a, b = self.coerce(args[1], target).run, self.coerce(args[2], target).run
        # A null condition picks b, as SQL's CASE WHEN does.
        return _Typed(target, lambda f: pc.if_else(pc.fill_null(condition(f), False), a(f), b(f)))

    def numeric(self, name: str, args: list[_Typed]) -> _Typed:
        x = self.expect(args[0], _NUMERIC, f"argument of {name}()")
        inner = x.run
        if name == "abs":
            return _Typed(x.type, lambda frame: pc.abs(inner(frame)))
        if name in ("floor", "ceil"):
            kernel = pc.floor if name == "floor" else pc.ceil
            return x if x.type == "long" else _Typed("double", lambda f: kernel(inner(f)))
        digits = self.literal(args[1], "long", "digits of round()") if len(args) > 1 else 0
        if x.type == "long" and digits >= 0:
            return x
        mode = "half_towards_infinity"  # half away from zero, as SQL rounds
        return _Typed(x.type, lambda f: pc.round(inner(f), ndigits=digits, round_mode=mode))

    def substr(self, args: list[_Typed], position: int) -> _Typed:
        s = self.expect(args[0], "string", "argument of substr()").run
        start = self.literal(args[1], "long", "start of substr()")
        length = self.literal(args[2], "long", "length of substr()")
        if start < 0 or length < 0:
            message = (
                f"substr() at position {position} needs start >= 0 and length >= 0; "
                f"got start {start} and length {length}"
            )
            raise self.error(message, position)
        stop = start + length
        return _Typed("string", lambda f: pc.utf8_slice_codeunits(s(f), start=start, stop=stop))

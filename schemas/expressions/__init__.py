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
             | NAME | NAME '.' NAME ... | `any field name`
             | NAME ['@v' DIGITS] ':' NAME
             | NAME '(' [expr {',' expr}] ')' | '(' expr ')'

``NUMBER`` is ``12`` (long) or ``1.5``, ``.5``, ``1e3`` (double). ``STRING`` is single- or
double-quoted with the escapes ``\\ \' \" \n \t \r \0 \uXXXX``. Keywords are lower case;
a field named like a keyword is written in backquotes. ``set:feature`` and
``set@v2:feature`` are stored features, which only request-time features may read
(``schemas.request_features``, where ``request.amount`` is a field sent with the lookup).

Types are ``boolean``, ``long``, ``double`` and ``string`` (Avro ``int`` reads as long and
``float`` as double). Other Avro forms read as their normalised values
(``schemas.avro_types``): timestamps and times of day as long milliseconds, dates as
``'YYYY-MM-DD'`` strings, decimals as doubles, enums and uuids as strings. A field of a
nested record is written ``address.city``; arrays and maps are only usable through
``size(field)``, their number of items. Semantics, chosen to match SQL where SQL has an answer:

* nulls propagate through operators and functions; ``and``/``or``/``not`` use Kleene
  three-valued logic; ``x == null`` is refused (it is always null): write ``x is null``.
  NaN is a value, not null.
* long op long stays long (``+ - * %``; overflow wraps like Java) except ``/``, which always
  gives double; long mixed with double gives double; ``x / 0`` and ``x % 0`` give null;
  ``%`` takes the sign of the dividend (SQL, not Python); ``+`` on two strings concatenates.
* ``if(cond, a, b)`` gives ``b`` when ``cond`` is false or null, like SQL ``CASE WHEN``;
  ``coalesce(a, b, ...)`` gives the first non-null argument; ``nullif(a, b)`` gives null
  when ``a == b`` and ``a`` otherwise (a null ``b`` never matches), so
  ``x / nullif(y, 0)`` reads as in SQL (``x / 0`` is null anyway).

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

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas.avro_types import top_field
from headwater.schemas.expressions.compiler import Compiler, Run
from headwater.schemas.expressions.grammar import ExpressionError, parse
from headwater.schemas.expressions.kernels import ARROW_TYPES, Frame

__all__ = [
    "Expression",
    "ExpressionError",
    "apply_filter_and_transforms",
    "compile_expression",
    "compile_transforms",
    "output_types",
]


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
    _run: Run = field(repr=False, compare=False)
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
        missing = sorted(f for f in self.fields if top_field(f) not in table.column_names)
        if missing:
            message = (
                f"table has no column {', '.join(map(repr, missing))} needed by expression "
                f"{self.text!r}; columns: {', '.join(table.column_names) or '(none)'}"
            )
            raise ExpressionError(message, expression=self.text)
        result = self._run(Frame(table, self.text))
        arrow_type = ARROW_TYPES[self.type]
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
    compiler = Compiler(text, field_types)
    typed = compiler.compile(parse(text))
    if typed.type == "null":
        message = (
            f"expression {text!r} at position 0 is always null and has no type; "
            "hint: give it one, e.g. to_double(null) or to_string(null)"
        )
        raise ExpressionError(message, position=0, expression=text)
    field_types = {name: field_types[name] for name in sorted(compiler.fields)}
    return Expression(
        text=text,
        type=typed.type,
        fields=frozenset(field_types),
        _run=typed.run,
        _field_types=tuple(field_types.items()),
    )


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
        table = (
            table.set_column(names.index(name), name, column)
            if name in names
            else table.append_column(name, column)
        )
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

"""The type checker of the expression language, which compiles a parse tree to Arrow closures.

One walk over the lark tree both checks types against the source's Avro field types and
builds, per node, a closure over the kernels; so every type error is found when a definition
is applied, before the first event arrives, and evaluation makes no decisions on types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from lark import Token, Tree

from headwater.schemas.expressions.grammar import ExpressionError, unescape
from headwater.schemas.expressions.kernels import (
    ARITHMETIC,
    ARITY,
    ARROW_TYPES,
    COMPARISONS,
    CONVERSIONS,
    MATCHERS,
    UNARY,
    Datum,
    Frame,
    list_size,
    null_of,
    to_double,
)
from headwater.schemas.suggestions import did_you_mean

# A compiled (sub)expression: computes its value in one evaluation.
Run = Callable[[Frame], Datum]

EXPRESSION_TYPES: Final[Mapping[str, str]] = {
    # How expressions read a field of each Avro (or transform output) type.
    "boolean": "boolean",
    "int": "long",
    "long": "long",
    "float": "double",
    "double": "double",
    "string": "string",
    # Normalised forms (schemas.avro_types): times are epoch / day milliseconds, dates ISO
    # text, decimals doubles, enum symbols text.
    "timestamp": "long",
    "time": "long",
    "date": "string",
    "decimal": "double",
    "enum": "string",
}
_SIZED: Final = frozenset({"array", "map"})
_NUMERIC: Final = frozenset({"long", "double"})
_INT64_MAX: Final = 2**63 - 1
_MAX_DEPTH: Final = 200


@dataclass(frozen=True)
class _Typed:
    """A checked subexpression: its type, how to compute it, and its span in the text."""

    type: str
    run: Run
    position: int = 0
    end: int = 0
    is_literal: bool = False
    value: object = None


def _constant(type_name: str, value: object) -> _Typed:
    scalar = pa.scalar(value, ARROW_TYPES[type_name])
    return _Typed(type_name, lambda frame: scalar, is_literal=True, value=value)


_NULL: Final = _Typed("null", lambda frame: null_of("null"), is_literal=True)


def _token(node: Tree[Token], index: int) -> Token:
    child = node.children[index]
    if not isinstance(child, Token):  # pragma: no cover - the grammar guarantees a token
        message = f"expected a token in {node.data}, got {child!r}"
        raise TypeError(message)
    return child


class Compiler:
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
            return replace(typed, type=target, run=lambda frame: null_of(target))
        inner = typed.run  # only long -> double gets here; beyond 2**53 it rounds, as in SQL
        return replace(typed, type=target, run=lambda f: to_double(inner(f)), is_literal=False)

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

    def literal(self, typed: _Typed, type_name: str, what: str) -> Datum:
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
        return _constant("string", unescape(token.value, token.start_pos or 0, self.text))

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
            suggestion = did_you_mean(name, known)
            if suggestion:
                message += suggestion
            elif name in ARITY:
                message += f"; hint: {name} is a function, call it as {name}(...)"
            elif ":" in name:
                message += "; hint: only request features read stored features (set:feature)"
            raise self.error(message, position)
        avro = self.field_types[name]
        type_name = EXPRESSION_TYPES.get(avro) if isinstance(avro, str) else None
        if type_name is None:
            hint = f"; hint: size({name}) gives its number of items" if avro in _SIZED else ""
            if avro == "record":
                hint = f"; hint: use one of its fields, e.g. {name}.<field>"
            message = (
                f"field {name!r} at position {position} has Avro type {avro!r}, which "
                f"expressions cannot use; usable types: {', '.join(sorted(EXPRESSION_TYPES))}{hint}"
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
        return self.binary(target, target, left, right, ARITHMETIC[symbol])

    def binary(
        self,
        result: str,
        operands: str,
        left: _Typed,
        right: _Typed,
        kernel: Callable[[Datum, Datum], Datum],
    ) -> _Typed:
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
        return self.binary("boolean", target, left, right, COMPARISONS[symbol])

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
            value_set = pa.array([item.value for item in items], ARROW_TYPES[target])

            def run(frame: Frame) -> Datum:
                values = x(frame)
                found = pc.is_in(values, value_set=value_set)
                return pc.if_else(pc.is_null(values), null_of("boolean"), found)
        else:
            members = [self.coerce(item, target).run for item in items]

            def run(frame: Frame) -> Datum:
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
        if name not in ARITY:
            known = sorted(ARITY)
            message = (
                f"unknown function {name!r} at position {position}; "
                f"known functions: {', '.join(known)}"
            )
            message += did_you_mean(name, known)
            raise self.error(message, position)
        if name == "size":
            return self.size(node, position)
        args, (low, high) = self.compile_all(node.children[1]), ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = (
                f"{low} or more" if high is None else " or ".join(sorted({f"{low}", f"{high}"}))
            )
            message = (
                f"function {name!r} at position {position} takes {wanted} argument"
                f"{'s' * (wanted != '1')}; got {len(args)}"
            )
            raise self.error(message, position)
        what = f"argument of {name}()"
        if name in UNARY:
            param, result, kernel = UNARY[name]
            allowed = _NUMERIC if param == "double" else param
            inner = self.coerce(self.expect(args[0], allowed, what), param).run
            return _Typed(result, lambda frame: kernel(inner(frame)))
        if name in CONVERSIONS:
            result, convert = CONVERSIONS[name]
            if args[0].type in ("null", result):
                return self.coerce(args[0], result)
            inner = args[0].run
            return _Typed(result, lambda frame: convert(inner(frame)))
        if name in MATCHERS:
            matcher, s = MATCHERS[name], self.expect(args[0], "string", what).run
            pattern = self.literal(args[1], "string", f"second argument of {name}()")
            return _Typed("boolean", lambda frame: matcher(s(frame), pattern=pattern))
        if name == "concat":  # nulls count as empty strings, as in PostgreSQL
            parts = [self.expect(arg, "string", what).run for arg in args]
            return _Typed(
                "string",
                lambda f: pc.binary_join_element_wise(
                    *[part(f) for part in parts], "", null_handling="replace", null_replacement=""
                ),
            )
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
        if name == "nullif":  # SQL: null when a == b, else a (a null b never matches)
            self.comparable(args[0], args[1], "==", position)
            a, b = self.coerce(args[0], target).run, self.coerce(args[1], target).run
            none = null_of(target)
            return _Typed(
                target, lambda f: pc.if_else(pc.fill_null(pc.equal(a(f), b(f)), False), none, a(f))
            )
        condition = self.expect(args[0], "boolean", "condition of if()").run
        a, b = self.coerce(args[1], target).run, self.coerce(args[2], target).run
        # A null condition picks b, as SQL's CASE WHEN does.
        return _Typed(target, lambda f: pc.if_else(pc.fill_null(condition(f), False), a(f), b(f)))

    def size(self, node: Tree[Token], position: int) -> _Typed:
        """``size(field)``: the number of items of an array or map field (null stays null).

        Arrays and maps have no type of their own in the language, so the argument must be
        the field itself; it is read straight from its Arrow column.
        """
        arguments = node.children[1]
        items = getattr(arguments, "children", [])
        argument = items[0] if len(items) == 1 else None
        if not isinstance(argument, Tree) or argument.data != "field":
            message = (
                f"size() at position {position} takes one array or map field, e.g. size(tags); "
                f"got {self.text[position:]!r}"
            )
            raise self.error(message, position)
        token = _token(argument, 0)
        name = token.value[1:-1] if token.type == "QUOTED_NAME" else token.value
        avro = self.field_types.get(name)
        if avro not in _SIZED:
            found = "an unknown field" if avro is None else f"{avro}"
            message = (
                f"size() at position {token.start_pos or 0} needs an array or map field; "
                f"{name!r} is {found}"
            )
            raise self.error(message, token.start_pos or 0)
        self.fields.add(name)
        return _Typed("long", lambda frame: list_size(frame.nested(name)))

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

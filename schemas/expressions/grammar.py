"""The grammar of the expression language: parsing, and messages for syntax errors.

Kept apart from type checking so that the fixed LALR parser (built once, at import) and the
work of turning lark's exceptions into messages that say what was expected, where, and how to
fix it live in one place. Nothing here knows about types or Arrow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from headwater.schemas.errors import DefinitionError

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
    | (NAME | QUOTED_NAME | PATH | FEATURE_REF)             -> field
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
FEATURE_REF.3: /[A-Za-z_][A-Za-z0-9_]*(@v[0-9]+)?:[A-Za-z_][A-Za-z0-9_]*/
PATH.2: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%import common.WS
%ignore WS
"""

# Built once at import: the grammar is fixed, and parsing is the only thing done per text.
_PARSER: Final = Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True)

_VALUES: Final = frozenset(
    {"NUMBER", "STRING", "TRUE", "FALSE", "NULL", "NAME", "QUOTED_NAME", "PATH", "FEATURE_REF"}
)
_BINARY: Final = frozenset({"OR", "AND", "COMPARE", "IN", "IS", "PLUS", "MUL_OP"})
_TERMINAL_NAMES: Final[Mapping[str, str]] = {
    "_RPAR": "')'",
    "_COMMA": "','",
    "NOT": "'not'",
    "NULL": "'null'",
    "IN": "'in'",
    "$END": "the end of the expression",
}
_CHARACTER_HINTS: Final[Mapping[str, str]] = {
    "=": "compare with '==', not '='",
    "&": "write 'and', not '&&'",
    "|": "write 'or', not '||'",
    "!": "write 'not x' or 'a != b'",
    "[": "indexing is not part of the language",
    ".": "attribute access and methods are not part of the language; call a function",
    **dict.fromkeys("'\"`", "a string or `name` is never closed; close it with the same quote"),
}
_ESCAPES: Final[Mapping[str, str]] = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
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


def parse(text: str) -> Tree[Token]:
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


def unescape(raw: str, position: int, text: str) -> str:
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

"""Request-time features: expressions over fields sent with a lookup and stored features.

A feature set may declare ``request_schema`` (fields a lookup sends, with their types) and
``request_features`` (name -> expression)::

    request_schema: {amount: double}
    request_features:
      amount_vs_avg: "request.amount / nullif(avg_amount_7d, 0)"

An expression reads ``request.<field>`` (declared in the set's ``request_schema``) and stored
features: a bare ``feature`` of the same set (at the same version), ``set:feature`` (the
latest version of that set; the set's own version when it names itself) or
``set@v2:feature`` (pinned). Other sets may describe other entities; a lookup then needs
their keys too. A request feature cannot read another request feature (inline its
expression instead), so evaluation order never matters.

The same compiled :class:`RequestFeature` is evaluated online, over the rows of a lookup, and
offline, over the label rows of a retrieval, from one Arrow table built by
:func:`evaluation_table`; that is what makes training and serving agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    output_types,
)
from headwater.schemas.expressions.grammar import parse
from headwater.schemas.feature_types import expression_type, value_type
from headwater.schemas.suggestions import did_you_mean

__all__ = [
    "REQUEST_PREFIX",
    "Dependency",
    "RequestFeature",
    "compile_request_feature",
    "evaluation_table",
    "request_arrow_type",
    "request_feature_problems",
]

REQUEST_PREFIX = "request."
"""How an expression reads a field sent with the lookup: ``request.amount``."""


@dataclass(frozen=True)
class Dependency:
    """A stored feature a request feature reads.

    Attributes:
        column: the name as the expression writes it (``avg_amount_7d``,
            ``user_spend:avg_amount_7d``); the evaluation table's column of its values.
        feature_set: the feature-set version it is read from.
        feature: the stored feature's name.
        type: the expression type of its value (``schemas.feature_types.value_type``).
    """

    column: str
    feature_set: FeatureSet
    feature: str
    type: str

    @property
    def pinned_ref(self) -> str:
        """``set@vN:feature``: the reference that reads exactly this dependency."""
        return f"{self.feature_set.qualified_name}:{self.feature}"


@dataclass(frozen=True, kw_only=True)
class RequestFeature:
    """One compiled request feature: its expression and what the expression reads."""

    feature_set: FeatureSet
    name: str
    expression: Expression
    request_types: tuple[tuple[str, str], ...]
    """``(field, declared type)`` of each request field read, in name order."""
    dependencies: tuple[Dependency, ...]

    @property
    def pinned_ref(self) -> str:
        """``set@vN:name``: the reference that resolves to this request feature again."""
        return f"{self.feature_set.qualified_name}:{self.name}"

    @property
    def request_fields(self) -> tuple[str, ...]:
        """The request fields a lookup must send for this feature."""
        return tuple(name for name, _ in self.request_types)


def _fail(fs: FeatureSet, name: str, message: str, text: str) -> ExpressionError:
    full = f"feature set {fs.name!r}: request feature {name!r}: {message}"
    return ExpressionError(full, expression=text)


def _referenced_names(text: str) -> list[str]:
    """Every field name the expression writes, in order (``size(x)``'s argument included)."""
    found = []
    for tree in parse(text).iter_subtrees():
        if tree.data == "field":
            token = tree.children[0]
            value = str(token)
            name = value[1:-1] if getattr(token, "type", "") == "QUOTED_NAME" else value
            found.append((getattr(tree.meta, "start_pos", 0), name))
    # In the order written, so dependencies (and the plans read) are in a stable order.
    return list(dict.fromkeys(name for _, name in sorted(found)))


def _stored_dependency(
    defs: Definitions, fs: FeatureSet, name: str, written: str, text: str, *, loading: bool
) -> tuple[Dependency, str]:
    """The stored feature ``written`` refers to, and its expression type."""
    set_part, _, feature = written.rpartition(":")
    set_name, _, version_text = set_part.partition("@v")
    version = int(version_text) if version_text else None
    if loading:  # files hold one version of each set; @vN is checked again by apply
        version = None
    if not set_part or (set_name == fs.name and version in (None, fs.version)):
        target = fs
    else:
        try:
            target = defs.feature_set(set_name, version)
        except UnknownNameError as exc:
            raise _fail(fs, name, f"{written!r} reads {exc}", text) from None
    if feature in target.request_features:
        message = (
            f"{written!r} is a request feature; request features cannot read one another; "
            f"hint: inline its expression {target.request_features[feature]!r}"
        )
        raise _fail(fs, name, message, text)
    stored = [f.name for f in target.features]
    if feature not in stored:
        message = f"unknown feature {written!r}: feature set {target.name!r} has {stored}"
        if not set_part and feature in fs.request_schema:
            message += f"; hint: a request field is read as {REQUEST_PREFIX}{feature}"
        else:
            message += did_you_mean(feature, stored)
        raise _fail(fs, name, message, text)
    source = defs.source(target.source)
    types = output_types(source.schema.field_types, target.transforms)
    kind = value_type(target.feature(feature), types)
    if kind is None:
        function = target.feature(feature).function
        message = (
            f"{written!r} ({function}) has no value an expression can use (a list, a map or "
            "a type expressions cannot read); hint: read a feature such as last, count or "
            "mean instead"
        )
        raise _fail(fs, name, message, text)
    return Dependency(written, target, feature, kind), kind


def compile_request_feature(
    defs: Definitions, fs: FeatureSet, name: str, *, loading: bool = False
) -> RequestFeature:
    """Type-check and compile request feature ``name`` of ``fs`` against ``defs``.

    ``loading``: ``defs`` are freshly loaded files, which hold one version of each set, so
    ``set@vN:feature`` is typed against that one (``apply`` checks the versions later).

    Raises:
        ExpressionError: the expression does not parse or type-check, reads an undeclared
            request field, an unknown feature, a request feature or a feature whose value is
            not a scalar; the message names the feature set, the request feature and a fix.
    """
    text = fs.request_features[name]
    try:
        written_names = _referenced_names(text)
    except ExpressionError as exc:
        raise _fail(fs, name, str(exc), text) from exc
    field_types: dict[str, str] = {}
    request_types: dict[str, str] = {}
    dependencies: list[Dependency] = []
    for written in written_names:
        if written.startswith(REQUEST_PREFIX):
            field = written[len(REQUEST_PREFIX) :]
            declared = fs.request_schema.get(field)
            if declared is None:
                known = sorted(fs.request_schema)
                message = (
                    f"unknown request field {written!r}; request_schema declares "
                    f"{known or 'no fields'}; hint: declare it under request_schema, e.g. "
                    f"{field}: double" + did_you_mean(field, known)
                )
                raise _fail(fs, name, message, text)
            field_types[written], request_types[field] = declared, declared
        elif written == "request":
            message = (
                "a bare 'request' reads no field; write request.<field>, or "
                f"{fs.name}:request for a stored feature named request"
            )
            raise _fail(fs, name, message, text)
        elif "." in written:
            message = (
                f"{written!r} is neither a request field nor a feature; write "
                f"{REQUEST_PREFIX}<field> for a field sent with the lookup, or set:feature"
            )
            raise _fail(fs, name, message, text)
        else:
            dependency, kind = _stored_dependency(defs, fs, name, written, text, loading=loading)
            dependencies.append(dependency)
            field_types[written] = kind
    try:
        expression = compile_expression(text, field_types)
    except ExpressionError as exc:
        raise _fail(fs, name, str(exc), text) from exc
    return RequestFeature(
        feature_set=fs,
        name=name,
        expression=expression,
        request_types=tuple(sorted(request_types.items())),
        dependencies=tuple(dependencies),
    )


def request_feature_problems(defs: Definitions) -> list[tuple[FeatureSet, str, str]]:
    """``(feature set, request feature, message)`` for every request feature that does not
    compile, so ``apply`` reports them all at once."""
    problems = []
    for fs in defs.feature_sets:
        for name in fs.request_features:
            try:
                compile_request_feature(defs, fs, name)
            except (ExpressionError, UnknownNameError) as exc:
                problems.append((fs, name, str(exc)))
    return problems


def evaluation_table(
    rows: int, request: Mapping[str, pa.Array], dependencies: Mapping[str, pa.Array]
) -> pa.Table:
    """The table :meth:`Expression.evaluate` reads for a request feature: a struct column
    ``request`` of the request fields (``request.amount`` reads its field ``amount``) and
    one column per dependency, named as the expression writes it.

    Args:
        rows: the number of rows (lookup rows or label rows).
        request: request field -> one value per row, already typed (:func:`request_arrow_type`).
        dependencies: :attr:`Dependency.column` -> one value per row.
    """
    columns: dict[str, pa.Array] = dict(dependencies)
    if request:
        columns["request"] = pa.StructArray.from_arrays(list(request.values()), list(request))
    if not columns:
        return pa.table({"_row": pa.nulls(rows, pa.null())})
    return pa.table(columns)


def request_arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type of a request field declared ``type_name`` (``REQUEST_TYPES``)."""
    kind = expression_type(type_name)
    return {"boolean": pa.bool_(), "long": pa.int64(), "double": pa.float64()}.get(
        kind or "", pa.string()
    )

"""The subset of the Confluent Schema Registry REST API that standard clients need (DESIGN §5–§6).

Mounted under ``/registry``, so a Confluent client's ``url`` is ``http://HOST:PORT/registry``
and confluent-kafka's ``AvroSerializer`` / ``AvroDeserializer`` work unchanged. Ids, subjects and
versions live in the catalog: the ids the serializer writes into messages are the ids the stream
workers resolve. The compatibility level is always BACKWARD (``schemas.compatibility``).

Requests may carry Confluent's ``application/vnd.schemaregistry.v1+json`` content type, so
bodies are read and decoded here rather than by FastAPI. Errors use Confluent's body,
``{"error_code": 40401, "message": "..."}``, and so does every endpoint not implemented here:
clients probe some of them and expect exactly that 404 (confluent-kafka 2.16 first asks
``GET /associations/resources/-/{topic}`` and falls back to ``<topic>-value`` on a 404).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import avro.errors
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from headwater.connectors.catalog import Catalog, CatalogError, SchemaVersion
from headwater.schemas.avro import AvroSchema
from headwater.schemas.compatibility import backward_problems
from headwater.serving.error_schema import REGISTRY_ERROR_RESPONSES
from headwater.serving.errors import ServingError

__all__ = ["CONTENT_TYPE", "RegistryError", "RegistryResponse", "registry_router"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
COMPATIBILITY = "BACKWARD"
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


class RegistryResponse(JSONResponse):
    media_type = CONTENT_TYPE


class RegistryError(ServingError):
    """An error answered with Confluent's body; each subclass has its HTTP status and code."""

    http_status = 500
    error_code = 50001

    def response(self) -> RegistryResponse:
        content = {"error_code": self.error_code, "message": str(self)}
        return RegistryResponse(status_code=self.http_status, content=content)


class EndpointNotFoundError(RegistryError):
    http_status, error_code = 404, 404


class SubjectNotFoundError(RegistryError):
    http_status, error_code = 404, 40401


class VersionNotFoundError(RegistryError):
    http_status, error_code = 404, 40402


class SchemaNotFoundError(RegistryError):
    http_status, error_code = 404, 40403


class IncompatibleSchemaError(RegistryError):
    http_status, error_code = 409, 409


class BadBodyError(RegistryError, ValueError):
    http_status, error_code = 400, 400


class InvalidSchemaError(RegistryError, ValueError):
    http_status, error_code = 422, 42201


class InvalidVersionError(RegistryError, ValueError):
    http_status, error_code = 422, 42202


class InvalidCompatibilityError(RegistryError, ValueError):
    http_status, error_code = 422, 42203


class _RegistryRoute(APIRoute):
    """Turns a ``RegistryError`` raised by a handler into Confluent's error response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryError as exc:
                return exc.response()
            except ServingError as exc:  # refused by the API's guard: Confluent's body too
                if exc.http_status not in (401, 403):
                    raise
                content = {"error_code": exc.http_status, "message": str(exc)}
                return RegistryResponse(
                    status_code=exc.http_status, content=content, headers=exc.headers
                )

        return handle


def _ok(content: Any) -> RegistryResponse:
    return RegistryResponse(content=content)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # too deep a nesting
        msg = f'request body is not JSON ({exc}); expected an object like {{"schema": "<Avro schema JSON>"}}'
        raise BadBodyError(msg) from exc
    if not isinstance(data, dict):
        msg = f'request body is a JSON {type(data).__name__}; expected an object like {{"schema": "..."}}'
        raise BadBodyError(msg)
    return data


def _parse_schema(body: Mapping[str, Any]) -> AvroSchema:
    """The Avro schema of a registration, lookup or compatibility request."""
    schema_type = str(body.get("schemaType") or "AVRO")
    if schema_type.upper() != "AVRO":
        msg = f"schemaType {schema_type!r} is not supported; this registry serves only 'AVRO'"
        raise InvalidSchemaError(msg)
    if body.get("references"):
        msg = "schema references are not supported; inline the referenced types in one schema"
        raise InvalidSchemaError(msg)
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        msg = f"'schema' must be the Avro schema as a JSON string; got {type(text).__name__}"
        raise InvalidSchemaError(msg)
    try:
        return AvroSchema.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        msg = f"Invalid schema: the 'schema' string is not JSON: {exc}"
        raise InvalidSchemaError(msg) from exc
    except ValueError as exc:
        msg = f"Invalid schema: {exc}"
        raise InvalidSchemaError(msg) from exc
    except (KeyError, TypeError) as exc:
        # AvroSchema.from_dict lets these through for a record without a proper "fields" list.
        msg = f"Invalid schema: the record needs a 'fields' list of field objects ({exc!r})"
        raise InvalidSchemaError(msg) from exc


def _problems(old: SchemaVersion, new: AvroSchema) -> list[str]:
    """Why ``new`` cannot read what ``old`` wrote (BACKWARD); empty when it can."""
    try:
        return backward_problems(json.loads(old.schema), new.definition)
    except avro.errors.AvroException as exc:
        msg = f"Invalid schema: {type(exc).__name__}: {exc}"
        raise InvalidSchemaError(msg) from exc


def _subject_versions(catalog: Catalog, subject: str) -> list[SchemaVersion]:
    versions = catalog.schema_versions(subject)
    if not versions:
        msg = f"Subject '{subject}' not found; register a schema with POST /subjects/{subject}/versions"
        raise SubjectNotFoundError(msg)
    return versions


def _pick(versions: list[SchemaVersion], version: str) -> SchemaVersion:
    """``version`` of a subject: a number, ``latest`` or ``-1``."""
    if version in ("latest", "-1"):
        return versions[-1]
    try:
        number = int(version)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"version {version!r} is not valid; give a number from 1 or 'latest'"
        raise InvalidVersionError(msg)
    for candidate in versions:
        if candidate.version == number:
            return candidate
    msg = f"Version {number} not found for subject '{versions[0].subject}'; it has versions {[v.version for v in versions]}"
    raise VersionNotFoundError(msg)


def _schema_by_id(catalog: Catalog, schema_id: str) -> tuple[int, AvroSchema]:
    try:
        number = int(schema_id)
        return number, catalog.schema_by_id(number)
    except (ValueError, CatalogError) as exc:
        msg = f"Schema {schema_id} not found; ids come from POST /subjects/{{subject}}/versions"
        raise SchemaNotFoundError(msg) from exc


def _uses(catalog: Catalog, schema_id: str) -> list[SchemaVersion]:
    """The subject versions that registered schema ``schema_id``."""
    number, _ = _schema_by_id(catalog, schema_id)
    return [v for v in catalog.schema_versions() if v.id == number]


def _described(version: SchemaVersion) -> dict[str, Any]:
    return {
        "subject": version.subject,
        "id": version.id,
        "version": version.version,
        "schema": version.schema,
    }


def _register(catalog: Catalog, subject: str, schema: AvroSchema) -> int:
    """The id of ``schema`` under ``subject``, registering it as the next version if it is
    new there and BACKWARD compatible with the latest version."""
    versions = catalog.schema_versions(subject)
    for known in versions:
        if known.schema == schema.canonical:
            return known.id
    if versions:
        problems = _problems(versions[-1], schema)
        if problems:
            msg = (
                f"Schema being registered is incompatible with version {versions[-1].version} of "
                f"subject '{subject}': {'; '.join(problems)}"
            )
            raise IncompatibleSchemaError(msg)
    return catalog.register_schema(subject, schema)


def _lookup(catalog: Catalog, subject: str, schema: AvroSchema) -> dict[str, Any]:
    for known in _subject_versions(catalog, subject):
        if known.schema == schema.canonical:
            return _described(known)
    msg = f"Schema not found under subject '{subject}'; register it with POST /subjects/{subject}/versions"
    raise SchemaNotFoundError(msg)


def _check(catalog: Catalog, subject: str, version: str, schema: AvroSchema) -> dict[str, Any]:
    if version in ("latest", "-1") and not catalog.schema_versions(subject):
        return {"is_compatible": True, "messages": []}  # nothing registered to break
    problems = _problems(_pick(_subject_versions(catalog, subject), version), schema)
    return {"is_compatible": not problems, "messages": problems}


def _compatibility_level(body: Mapping[str, Any]) -> str:
    level = body.get("compatibility", body.get("compatibilityLevel"))
    if not isinstance(level, str) or level.upper() != COMPATIBILITY:
        msg = f"compatibility level {level!r} is not supported; this registry enforces only {COMPATIBILITY!r}"
        raise InvalidCompatibilityError(msg)
    return COMPATIBILITY


def registry_router(catalog: Catalog) -> APIRouter:
    """The registry endpoints over ``catalog``, under ``/registry``.

    The prefix is the router's own (not given at inclusion), so each route's path is the
    full template the API's access table (``serving.auth.required_scope``) names.
    """
    router = APIRouter(
        prefix="/registry",
        route_class=_RegistryRoute,
        tags=["schema registry"],
        responses=REGISTRY_ERROR_RESPONSES,
    )

    @router.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> Response:
        schema = _parse_schema(await _json_body(request))
        return _ok({"id": await run_in_threadpool(_register, catalog, subject, schema)})

    @router.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> Response:
        schema = _parse_schema(await _json_body(request))
        return _ok(await run_in_threadpool(_lookup, catalog, subject, schema))

    @router.get("/schemas/types")
    def schema_types() -> Response:
        return _ok(["AVRO"])

    @router.get("/schemas/ids/{schema_id}")
    def schema(schema_id: str) -> Response:
        return _ok({"schema": _schema_by_id(catalog, schema_id)[1].canonical})

    @router.get("/schemas/ids/{schema_id}/versions")
    def schema_versions(schema_id: str) -> Response:
        return _ok(
            [{"subject": v.subject, "version": v.version} for v in _uses(catalog, schema_id)]
        )

    @router.get("/schemas/ids/{schema_id}/subjects")
    def schema_subjects(schema_id: str) -> Response:
        return _ok(sorted({v.subject for v in _uses(catalog, schema_id)}))

    @router.get("/subjects")
    def subjects() -> Response:
        return _ok(sorted({v.subject for v in catalog.schema_versions()}))

    @router.get("/subjects/{subject}/versions")
    def versions(subject: str) -> Response:
        return _ok([v.version for v in _subject_versions(catalog, subject)])

    @router.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str) -> Response:
        return _ok(_described(_pick(_subject_versions(catalog, subject), version)))

    @router.get("/subjects/{subject}/versions/{version}/schema")
    def version_schema(subject: str, version: str) -> Response:
        return _ok(json.loads(_pick(_subject_versions(catalog, subject), version).schema))

    @router.delete("/subjects/{subject}")
    def delete_subject(subject: str) -> Response:
        _subject_versions(catalog, subject)
        return _ok(catalog.delete_subject(subject))

    @router.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatibility(subject: str, version: str, request: Request) -> Response:
        schema = _parse_schema(await _json_body(request))
        return _ok(await run_in_threadpool(_check, catalog, subject, version, schema))

    @router.post("/compatibility/subjects/{subject}/versions")
    async def compatibility_latest(subject: str, request: Request) -> Response:
        schema = _parse_schema(await _json_body(request))
        return _ok(await run_in_threadpool(_check, catalog, subject, "latest", schema))

    @router.get("/config")
    @router.get("/config/{subject}")
    def config(subject: str | None = None) -> Response:
        return _ok({"compatibilityLevel": COMPATIBILITY})

    @router.put("/config")
    @router.put("/config/{subject}")
    async def set_config(request: Request, subject: str | None = None) -> Response:
        level = _compatibility_level(await _json_body(request))
        return _ok({"compatibility": level, "compatibilityLevel": level})

    @router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
    def not_found() -> Response:
        msg = "HTTP 404 Not Found"
        raise EndpointNotFoundError(msg)

    return router

"""Rows of a SQL query (SQLite or PostgreSQL through SQLAlchemy), streamed in chunks.

With a watermark column the query is wrapped as
``SELECT * FROM (<query>) AS hw_src WHERE <column> >= :after ORDER BY <column>`` (``>`` when
not ``inclusive``), so an incremental run reads only rows at or above the last value
ingested, in watermark order; ``headwater.watermarks`` drops the rows at that value that
were ingested before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from headwater.schemas.errors import ConfigError

__all__ = ["query_identity", "read_sql_rows", "safe_url"]


def safe_url(url: str) -> str:
    """The URL without its password, for messages and identities."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def query_identity(url: str, query: str, watermark_column: str | None) -> str:
    return f"sql:{safe_url(url)}:{watermark_column or ''}:{query.strip()}"


def _wrapped(
    engine: sa.Engine, query: str, column: str | None, after: Any, inclusive: bool
) -> tuple[str, dict[str, Any]]:
    query = query.strip().rstrip(";")
    if column is None:
        return query, {}
    quoted = engine.dialect.identifier_preparer.quote(column)
    operator = ">=" if inclusive else ">"
    where = f" WHERE hw_src.{quoted} {operator} :hw_after" if after is not None else ""
    sql = f"SELECT * FROM ({query}) AS hw_src{where} ORDER BY hw_src.{quoted}"
    return sql, ({"hw_after": after} if after is not None else {})


def read_sql_rows(
    url: str,
    query: str,
    *,
    watermark_column: str | None = None,
    after: Any = None,
    inclusive: bool = False,
    chunk_size: int = 10_000,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row_number, row)`` of the query's result, 1-based, fetched ``chunk_size`` at a time.

    With ``watermark_column`` and ``after``: only rows above ``after`` (or at it too, when
    ``inclusive``), in watermark order.

    Raises:
        ConfigError: the URL is invalid, the database unreachable or the query fails.
    """
    try:
        engine = sa.create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        msg = (
            f"--db {safe_url(url)!r} is not a usable database URL ({exc}); e.g. sqlite:///events.db"
        )
        raise ConfigError(msg) from exc
    sql, params = _wrapped(engine, query, watermark_column, after, inclusive)
    n = 0
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
                sa.text(sql), params
            )
            for part in result.mappings().partitions(chunk_size):
                for row in part:
                    n += 1
                    yield n, dict(row)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        detail = (str(orig) if orig is not None else str(exc)).splitlines()[0]
        msg = f"query on {safe_url(url)} failed: {detail}"
        raise ConfigError(msg) from exc
    finally:
        engine.dispose()

"""Native hot paths of Headwater (Rust, PyO3); see ``headwater.schemas.avro_batch``."""

from typing import Any

class AvroBatchDecoder:
    """Decodes batches of Confluent-framed messages written with one schema id."""

    def __init__(self, fields: list[Any], schema_id: int) -> None: ...
    def decode(self, payloads: list[bytes | None]) -> list[tuple[Any, ...]] | str:
        """One ``(length, null_count, validity, buffers, children)`` per field, or why the
        batch must take the per-event path."""

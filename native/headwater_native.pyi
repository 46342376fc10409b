"""Native hot paths of Headwater (Rust, PyO3); see ``headwater.schemas.avro_batch``."""

from typing import Any

class AvroBatchDecoder:
    """Decodes batches of Confluent-framed messages written with one schema id."""

    def __init__(self, fields: list[Any], schema_id: int) -> None: ...
    def decode(self, payloads: list[bytes | None]) -> list[tuple[Any, ...]] | str:
        """One ``(length, null_count, validity, buffers, children)`` per field, or why the
        batch must take the per-event path."""

class FoldBatch:
    """The columns a plan's partials read, with event times and arrival seqs, of one batch."""

    def __init__(self, columns: list[list[Any]], times: list[int], seqs: list[int]) -> None: ...

class TileFolder:
    """The native fold of one plan: ``(partial key, field index or -1, kind)`` per partial."""

    def __init__(self, adders: list[tuple[str, int, str]], resolution_ms: int) -> None: ...
    def fold(
        self,
        batch: FoldBatch,
        indices: list[int],
        tiles: dict[int, dict[str, Any]],
        lifetime: dict[str, Any],
        changed: set[int],
        offsets: dict[int, int],
        now: int,
        keep_from: int,
        newest: int | None,
    ) -> tuple[bool, int | None, list[int]]:
        """Fold one entity's events; returns (any new, newest, indices dated after now)."""

class PushEncoder:
    """Checks and encodes pushed events of one source whose fields are plain primitives."""

    def __init__(
        self,
        fields: list[tuple[str, str, int]],
        schema_id: int,
        timestamp: int,
        scale: int,
        keys: list[int],
        time_min: int,
        time_max: int,
    ) -> None: ...
    def encode(self, events: list[Any], latest_ms: int) -> list[tuple[bytes, bytes]] | None:
        """``(key, value)`` messages, or ``None`` when some event needs the Python path."""

def fsum_ranges(values: bytes, a: list[int], b: list[int]) -> bytes | None:
    """``math.fsum(values[a[i]:b[i]])`` per slice (float64 bytes in and out), or ``None``
    when a value is not finite or a sum overflows (Python's special cases)."""

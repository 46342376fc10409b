"""rebuild-online folds the history in chunks that never split an entity: each entity's
state is replaced once, whole."""

from __future__ import annotations

import pyarrow as pa

from headwater.stream_workers.rebuild import _chunks, _entity_keys, _entity_starts


def _history() -> pa.Table:
    # Sorted by (user, shop): runs of 3, 1, 4, 2 rows.
    users = ["a", "a", "a", "b", "c", "c", "c", "c", "c", "c"]
    shops = [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]
    return pa.table({"user": users, "shop": shops, "_offset": list(range(10))})


def test_entity_starts_and_keys_follow_every_key_column() -> None:
    history = _history()
    starts = _entity_starts(history, ("user", "shop"))
    assert starts.tolist() == [0, 3, 4, 8]
    assert _entity_keys(history, ("user", "shop"), starts) == [
        ("a", "1"),
        ("b", "1"),
        ("c", "1"),
        ("c", "2"),
    ]
    assert _entity_starts(history.slice(0, 0), ("user",)).tolist() == []


def test_chunks_cover_every_row_once_and_end_at_entity_boundaries() -> None:
    history = _history()
    starts = _entity_starts(history, ("user", "shop"))
    for size in (1, 2, 3, 4, 5, 100):
        chunks = list(_chunks(history, starts, size))
        offsets = [o for c in chunks for o in c.column("_offset").to_pylist()]
        assert offsets == list(range(10))
        bounds = {0, 3, 4, 8, 10}
        ends = [sum(c.num_rows for c in chunks[: i + 1]) for i in range(len(chunks))]
        assert set(ends) <= bounds, (size, ends)
    assert [c.num_rows for c in _chunks(history, starts, 4)] == [4, 4, 2]

"""How the Redis store splits a write into script calls: bounded per call in entities and in
arguments, with a hot entity in a call of its own (its changes stay atomic)."""

from __future__ import annotations

from headwater.connectors.online_redis import _CHUNK, _CHUNK_ARGS, _chunks


def test_small_entities_fill_calls_up_to_the_entity_bound() -> None:
    chunks = _chunks([10] * 1_200)
    assert [len(c) for c in chunks] == [_CHUNK, _CHUNK, 200]
    assert [i for c in chunks for i in c] == list(range(1_200))


def test_a_hot_entity_among_small_ones_gets_a_call_of_its_own() -> None:
    sizes = [10] * 300 + [86_403] + [10] * 300
    chunks = _chunks(sizes)
    assert [i for c in chunks for i in c] == list(range(601))
    assert [300] in chunks  # alone: bounded by its own retention, never by its neighbours
    for chunk in chunks:
        if chunk != [300]:
            assert sum(sizes[i] for i in chunk) <= _CHUNK_ARGS
            assert len(chunk) <= _CHUNK


def test_arguments_bound_a_call_of_medium_entities() -> None:
    sizes = [20_003] * 5
    chunks = _chunks(sizes)
    assert chunks == [[0, 1], [2, 3], [4]]
    assert all(sum(sizes[i] for i in c) <= _CHUNK_ARGS for c in chunks)

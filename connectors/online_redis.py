"""Redis online store: one hash per entity and feature-set version.

Key ``hw:<set>:v<version>:{<entity key>}``; the braces are a Redis Cluster hash tag so all of
an entity's data lives in one slot. Fields: ``o`` last applied offset per partition, ``N`` newest event
time, ``L`` lifetime partials, ``P`` events dated in the writer's future, ``t:<k>`` partials
of tile ``k``. Values are JSON. Each entity is written by one Lua compare-and-set, so a reader never
sees a tile without the offset that produced it, and a stale writer is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
import redis

from connectors.base import BaseOnlineStore, EntityKey
from connectors.errors import OnlineStoreError
from schemas.definitions import FeatureSet
from schemas.tiles import EntityState

__all__ = ["RedisOnlineStore", "entity_redis_key"]

_SEP = "\x1f"

# Compare-and-set of one entity: apply the field changes only if the stored offset is still
# the one the writer read. Atomic (a script), and single-key so valid on Redis Cluster.
# ARGV: expected offset ('' = new entity), n (2 x fields to set), field/value pairs,
# then fields to delete.
_APPLY_LUA = """
local cur = redis.call('HGET', KEYS[1], 'o')
if (cur or '') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + n)) end
if #ARGV > 2 + n then redis.call('HDEL', KEYS[1], unpack(ARGV, 3 + n, #ARGV)) end
return 1
"""


def entity_redis_key(feature_set: FeatureSet, key: EntityKey) -> str:
    return f"hw:{feature_set.name}:v{feature_set.version}:{{{_SEP.join(key)}}}"


def _encode(state: EntityState) -> dict[bytes, bytes]:
    fields = {
        b"o": orjson.dumps(state.offsets, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS),
        b"L": orjson.dumps(state.lifetime),
        b"P": orjson.dumps(state.pending),
    }
    if state.newest is not None:
        fields[b"N"] = str(state.newest).encode()
    for k, tile in state.tiles.items():
        fields[b"t:%d" % k] = orjson.dumps(tile)
    return fields


def _decode(raw: Mapping[bytes, bytes]) -> EntityState | None:
    if not raw:
        return None
    try:
        tiles = {int(f[2:]): orjson.loads(v) for f, v in raw.items() if f.startswith(b"t:")}
        return EntityState(
            tiles=tiles,
            lifetime=orjson.loads(raw[b"L"]),
            newest=int(raw[b"N"]) if b"N" in raw else None,
            pending=orjson.loads(raw[b"P"]),
            offsets={int(p): o for p, o in orjson.loads(raw[b"o"]).items()},
        )
    except (KeyError, ValueError, orjson.JSONDecodeError) as exc:
        msg = f"unreadable online state (fields {sorted(raw)}): {exc}"
        raise OnlineStoreError(msg) from exc


class RedisOnlineStore(BaseOnlineStore):
    """Online store on a standalone Redis (``redis://host:port/db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = redis.Redis.from_url(url, decode_responses=False)
        self._apply = self._client.register_script(_APPLY_LUA)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()

    def read(self, feature_set: FeatureSet, keys: Sequence[EntityKey]) -> list[EntityState | None]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(entity_redis_key(feature_set, key))
        try:
            raws = pipe.execute()
        except redis.RedisError as exc:
            msg = f"reading {len(keys)} entities of {feature_set.qualified_name} from {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc
        return [_decode(raw) for raw in raws]

    def write(
        self,
        feature_set: FeatureSet,
        states: Mapping[EntityKey, EntityState],
        before: Mapping[EntityKey, EntityState | None],
    ) -> list[EntityKey]:
        pipe = self._client.pipeline(transaction=False)
        written: list[EntityKey] = []
        for key, state in states.items():
            old = before.get(key)
            new_fields = _encode(state)
            old_fields = _encode(old) if old is not None else {}
            changed = [x for f, v in new_fields.items() if old_fields.get(f) != v for x in (f, v)]
            gone = [f for f in old_fields if f not in new_fields]
            if not changed and not gone:
                continue
            name = entity_redis_key(feature_set, key)
            written.append(key)
            expected = old_fields[b"o"] if old is not None else b""
            self._apply(keys=[name], args=[expected, len(changed), *changed, *gone], client=pipe)
        try:
            results = pipe.execute()
        except redis.RedisError as exc:
            msg = f"writing {len(states)} entities of {feature_set.qualified_name} to {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc
        return [key for key, ok in zip(written, results, strict=True) if not ok]

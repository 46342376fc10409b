"""Redis online store: one hash per entity and feature-set version.

Key ``<prefix>:<set>:v<version>:{<entity key>}`` (prefix ``redis.key_prefix``, default
``hw``); the braces are a Redis Cluster hash tag so all of an entity's data lives in one slot.
Fields: ``o`` the topic epoch and last applied offset per partition
(``<epoch>|{"<partition>": <offset>}``), ``N`` newest event
time, ``L`` lifetime partials, ``P`` events dated in the writer's future, ``t:<k>`` partials
of tile ``k``, ``v`` a random token that every write replaces. Values are JSON. Each entity is
written by one Lua compare-and-set, so a reader never sees a tile without the offset that
produced it, and a stale writer is refused. The same call sets the hash's expiry when the
set's features all have windows (``schemas.tiles.expires_at_ms``): memory follows the
active entities, not every entity ever seen.

Redis must run with ``maxmemory-policy noeviction`` (``check_no_eviction``): an evicting
Redis deletes states silently, while a full ``noeviction`` one refuses writes, which
``write`` reports as ``OnlineStoreFullError``.

A store created with ``cache_entities`` (the API does) keeps decoded states and checks them
with one ``HGET v`` per entity: a state is reused only while its token is unchanged, i.e.
while the hash is byte for byte what was decoded, so values never go stale.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import redis
from redis.crc import key_slot

from headwater.connectors.base import BaseOnlineStore, EntityKey
from headwater.connectors.errors import OnlineStoreError, OnlineStoreFullError
from headwater.connectors.redis_client import delete_keys, redis_client, redis_display
from headwater.connectors.redis_scripts import PackedScript, ReplicaWait
from headwater.connectors.redis_server_checks import check_no_eviction, durability_problem
from headwater.connectors.redis_timeouts import RedisTimeouts
from headwater.schemas.definitions import KEY_SEPARATOR, FeatureSet
from headwater.schemas.settings import RedisSettings
from headwater.schemas.tiles import EntityState, expires_at_ms

__all__ = [
    "RedisOnlineStore",
    "RedisTimeouts",
    "decode_state",
    "entity_redis_key",
    "split_per_request",
]

_VERSION = b"v"

# Compare-and-set of many entities in one call: each entity's field changes are applied only
# if its stored offsets are still the ones the writer read. Atomic per call. For entity i,
# ARGV holds: expected offsets ('' = new entity), the time the hash expires at (epoch ms, ''
# = never; see schemas.tiles.expires_at_ms), s (2 x fields to set), d (fields to delete),
# then the s field/value items and the d field names. Returns 1/0 per entity.
# HSET and HDEL take their arguments in slices of _LUA_SLICE: Lua's unpack() fails with "too
# many results to unpack" beyond about 8,000 values, and one entity of a backfill changes as
# many tiles as its longest window holds (10,080 for 7 days at 1 minute).
_LUA_SLICE = 1000  # even: HSET takes field/value pairs
_APPLY_LUA = (
    f"local slice = {_LUA_SLICE}\n"
    + """
local result = {}
local a = 1
for i, key in ipairs(KEYS) do
  local expected, expire = ARGV[a], ARGV[a + 1]
  local s, d = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local cur = redis.call('HGET', key, 'o')
  if (cur or '') == expected then
    for j = a, a + s - 1, slice do
      redis.call('HSET', key, unpack(ARGV, j, math.min(j + slice, a + s) - 1))
    end
    for j = a + s, a + s + d - 1, slice do
      redis.call('HDEL', key, unpack(ARGV, j, math.min(j + slice, a + s + d) - 1))
    end
    if expire ~= '' then redis.call('PEXPIREAT', key, expire) end
    result[i] = 1
  else
    result[i] = 0
  end
  a = a + s + d
end
return result
"""
)
# One script call holds up to _CHUNK entities and, past the first, up to _CHUNK_ARGS
# arguments: it bounds the time Redis spends in one script (it blocks every other client) and
# the request's size, also when one hot entity of a backfill changes tens of thousands of
# tiles. An entity larger than that alone gets a call of its own (its changes must be atomic),
# bounded by its own retention: 2 arguments per tile of the feature set's longest window.
_CHUNK = 500
_CHUNK_ARGS = 50_000


def _chunks(sizes: Sequence[int]) -> list[list[int]]:
    """Indexes of the entities of each script call, given each entity's argument count."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if current and (len(current) == _CHUNK or total + size > _CHUNK_ARGS):
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        chunks.append(current)
    return chunks


def _slot_groups(names: Sequence[str], cluster: bool) -> list[list[int]]:
    """Indexes of ``names`` grouped by hash slot (one group for a standalone Redis)."""
    if not cluster:
        return [list(range(len(names)))]
    groups: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(key_slot(name.encode()), []).append(i)
    return list(groups.values())


def entity_redis_key(feature_set: FeatureSet, key: EntityKey, prefix: str = "hw") -> str:
    return f"{prefix}:{feature_set.name}:v{feature_set.version}:{{{KEY_SEPARATOR.join(key)}}}"


def _encode_head(state: EntityState) -> dict[bytes, bytes]:
    """The fields other than tiles: small, and changed by nearly every write."""
    offsets = state.offsets
    if len(offsets) == 1:  # the usual case, spelled as orjson would
        ((partition, offset),) = offsets.items()
        o = b'{"%d":%d}' % (partition, offset)
    else:
        o = orjson.dumps(offsets, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)
    if state.epoch is not None:
        o = state.epoch.encode() + b"|" + o
    fields = {
        b"o": o,
        b"L": orjson.dumps(state.lifetime),
        b"P": orjson.dumps(state.pending) if state.pending else b"[]",
    }
    if state.newest is not None:
        fields[b"N"] = str(state.newest).encode()
    return fields


def _encode(state: EntityState) -> dict[bytes, bytes]:
    fields = _encode_head(state)
    for k, tile in state.tiles.items():
        fields[b"t:%d" % k] = orjson.dumps(tile)
    return fields


def _changes(state: EntityState, old: EntityState | None) -> tuple[dict[bytes, bytes], list[bytes]]:
    """Fields to set and fields to delete to turn ``old``'s stored hash into ``state``.

    A state updated in place (``old is state``) knows which tiles changed, so only those are
    encoded; otherwise the whole state is encoded and compared field by field.
    """
    old_fields: dict[bytes, bytes] = {} if old is None else old.stored
    if old is state:
        new = _encode_head(state)
        changed = {f: v for f, v in new.items() if old_fields.get(f) != v}
        gone = []
        for k in state.changed:
            name = b"t:%d" % k
            tile = state.tiles.get(k)
            if tile is not None:
                changed[name] = orjson.dumps(tile)
            elif name in old_fields:
                gone.append(name)
        return changed, gone
    new = _encode(state)
    changed = {f: v for f, v in new.items() if old_fields.get(f) != v}
    return changed, [f for f in old_fields if f not in new]


def split_per_request(
    requests: Sequence[tuple[FeatureSet, Sequence[EntityKey]]],
    states: Sequence[EntityState | None],
) -> list[list[EntityState | None]]:
    """``states`` (read for every request's keys, in order) cut back into one list each."""
    out: list[list[EntityState | None]] = []
    start = 0
    for _, keys in requests:
        out.append(list(states[start : start + len(keys)]))
        start += len(keys)
    return out


def decode_state(raw: Mapping[bytes, bytes]) -> EntityState | None:
    """A stored hash as an ``EntityState`` (``None`` for a missing entity's empty hash)."""
    if not raw:
        return None
    try:
        names = [f for f in raw if f.startswith(b"t:")]
        # One parse for all tiles: orjson's per-call overhead dominates small documents.
        states = orjson.loads(b"[" + b",".join([raw[f] for f in names]) + b"]")
        tiles = {int(f[2:]): state for f, state in zip(names, states, strict=True)}
        epoch, _, offsets = raw[b"o"].rpartition(b"|")
        return EntityState(
            stored={f: value for f, value in raw.items() if f != _VERSION},
            tiles=tiles,
            lifetime=orjson.loads(raw[b"L"]),
            newest=int(raw[b"N"]) if b"N" in raw else None,
            pending=orjson.loads(raw[b"P"]),
            offsets={int(p): o for p, o in orjson.loads(offsets).items()},
            epoch=epoch.decode() if epoch else None,
        )
    except (KeyError, ValueError, orjson.JSONDecodeError) as exc:
        msg = f"unreadable online state (fields {sorted(raw)}): {exc}"
        raise OnlineStoreError(msg) from exc


class RedisOnlineStore(BaseOnlineStore):
    """Online store on a standalone Redis (``redis://host:port/db``) or a Redis Cluster
    (``redis.cluster``: each script call and pipeline goes to the node of its keys' slot).

    Args:
        url: the server, as a URL or as full ``redis`` settings (ACL user, password, TLS;
            what ``from_settings`` passes).
        timeouts: connect and read timeouts of every call (``serving.redis_*``); none: wait.
    """

    def __init__(
        self,
        url: str | RedisSettings,
        *,
        cache_entities: int = 0,
        key_prefix: str = "hw",
        timeouts: RedisTimeouts | None = None,
    ) -> None:
        settings = url if isinstance(url, RedisSettings) else RedisSettings(url=url)
        # What messages call the server: never its password (see redis_display).
        self.url = redis_display(settings)
        self.settings = settings
        """Where and as whom to connect (for clients of other kinds, e.g. asyncio)."""
        self.key_prefix = key_prefix
        self.timeouts = timeouts
        self._client = redis_client(
            settings,
            decode_responses=False,
            **(timeouts.client_options() if timeouts else {}),
        )
        # WAIT after each batch's writes (redis.wait_replicas): see redis_scripts.
        wait = ReplicaWait(settings.replicas_to_wait, settings.wait_timeout_ms)
        self._apply = PackedScript(self._client, _APPLY_LUA, wait)
        self._cluster = settings.cluster
        self._cache_size = cache_entities
        self._cache: OrderedDict[str, tuple[bytes, EntityState]] = OrderedDict()
        # Write tokens: random per store object, then counted (a syscall per entity was 5 %
        # of a worker's time).
        self._writer_token = os.urandom(8).hex().encode() + b"."
        self._writes = itertools.count()

    @classmethod
    def from_settings(
        cls,
        redis_settings: RedisSettings,
        *,
        cache_entities: int = 0,
        timeouts: RedisTimeouts | None = None,
    ) -> RedisOnlineStore:
        """The store every process uses: the URL and key prefix of ``redis`` settings, so
        the worker, the API, the SDK and maintenance commands all see the same keys.
        ``timeouts`` (the API's) bound every command; without, redis-py's defaults apply."""
        return cls(
            redis_settings,
            cache_entities=cache_entities,
            key_prefix=redis_settings.key_prefix,
            timeouts=timeouts,
        )

    def key(self, feature_set: FeatureSet, key: EntityKey) -> str:
        """The Redis key of one entity of ``feature_set`` in this store."""
        return entity_redis_key(feature_set, key, self.key_prefix)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()

    def durability_problem(self) -> str | None:
        """Why this Redis would lose acknowledged states when it restarts, or ``None``.

        Workers acknowledge Kafka offsets once states are in Redis and never replay events
        into a state Redis lost, so a Redis without an append-only file fsynced on every
        write (``appendonly yes``, ``appendfsync always``) serves short windows after a
        restart, silently. ``None`` too when this cannot be told: the server refuses
        ``CONFIG GET`` (managed services, whose operator answers for durability) or does not
        answer (the first write will fail loudly). A cluster's nodes are each checked.
        """
        return durability_problem(self._client, self.url)

    def check_no_eviction(self) -> str | None:
        """Refuse a Redis that may evict entity states; a warning when that cannot be told.

        Under memory pressure, a Redis whose ``maxmemory-policy`` is anything but
        ``noeviction`` deletes keys on its own: entities come back short or ``NOT_FOUND``,
        and the worker, which trusts the offsets stored with each state, never replays what
        was lost. With ``noeviction`` a full Redis refuses writes instead, loudly
        (``OnlineStoreFullError``), and nothing stored is lost. A cluster's nodes are each
        checked.

        Returns:
            ``None`` for ``noeviction``; a warning text when the server refuses ``CONFIG GET``
            (managed services: check the policy in their console) or does not answer.

        Raises:
            OnlineStoreEvictionError: any other policy; the message names the fix.
        """
        return check_no_eviction(self._client, self.url)

    def stored_keys(self, feature_set: FeatureSet) -> Iterator[str]:
        """The Redis keys of every entity stored for this feature-set version (SCAN, so
        other clients are not blocked). Only keys of the ``entity_redis_key`` form match."""
        pattern = f"{self.key_prefix}:{feature_set.name}:v{feature_set.version}:{{*}}"
        try:
            for name in self._client.scan_iter(match=pattern, count=1000):
                yield name.decode()
        except redis.RedisError as exc:
            msg = f"listing the keys of {feature_set.qualified_name} in {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc

    def delete_keys(self, names: Sequence[str]) -> int:
        """Delete these keys (in batches); returns how many existed."""
        try:
            deleted = delete_keys(self._client, names)
        except redis.RedisError as exc:
            msg = f"deleting {len(names)} keys ({names[0]}, ...) from {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc
        return deleted

    def read(self, feature_set: FeatureSet, keys: Sequence[EntityKey]) -> list[EntityState | None]:
        return self.read_many([(feature_set, keys)])[0]

    def read_many(
        self, requests: Sequence[tuple[FeatureSet, Sequence[EntityKey]]]
    ) -> list[list[EntityState | None]]:
        """Every entity of every feature set, in one pipelined round trip (two when a cache
        is kept and some entity changed since it was cached)."""
        names = [self.key(fs, key) for fs, keys in requests for key in keys]
        if self._cache_size:
            states = self._read_cached(names)
        else:
            states = [decode_state(raw) for raw in self._pipeline("hgetall", names)]
        return split_per_request(requests, states)

    def _pipeline(self, command: str, names: list[str], *args: bytes) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            getattr(pipe, command)(name, *args)
        try:
            return list(pipe.execute())
        except redis.RedisError as exc:
            msg = f"reading {len(names)} entity states ({names[0]}, ...) from {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc

    def _read_cached(self, names: list[str]) -> list[EntityState | None]:
        states, stale = self.cache_hits(names, self._pipeline("hget", names, _VERSION))
        if stale:
            self.cache_fill(
                names, stale, self._pipeline("hgetall", [names[i] for i in stale]), states
            )
        return states

    @property
    def caching(self) -> bool:
        """Whether decoded states are kept (``cache_entities`` > 0)."""
        return self._cache_size > 0

    def cache_hits(
        self, names: Sequence[str], tokens: Sequence[bytes | None]
    ) -> tuple[list[EntityState | None], list[int]]:
        """The cached states whose write token (``HGET v``) is unchanged, and the indexes of
        the others, which must be read whole (``cache_fill``). Shared by the sync and the
        async (``connectors.online_redis_async``) read paths."""
        states: list[EntityState | None] = [None] * len(names)
        stale = []
        for i, (name, token) in enumerate(zip(names, tokens, strict=True)):
            cached = self._cache.get(name)
            if token is not None and cached is not None and cached[0] == token:
                states[i] = cached[1]
                self._cache.move_to_end(name)
            else:
                stale.append(i)
        return states, stale

    def cache_fill(
        self,
        names: Sequence[str],
        stale: Sequence[int],
        raws: Sequence[Mapping[bytes, bytes]],
        states: list[EntityState | None],
    ) -> None:
        """Decode the hashes read for the ``stale`` indexes into ``states`` and cache them."""
        for i, raw in zip(stale, raws, strict=True):
            states[i] = decode_state(raw)
            token = raw.get(_VERSION) if raw else None
            state = states[i]
            if token is not None and state is not None:
                state.stored = None  # only writers need the raw fields; halve the memory
                self._cache[names[i]] = (token, state)
                self._cache.move_to_end(names[i])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def write(
        self,
        feature_set: FeatureSet,
        states: Mapping[EntityKey, EntityState],
        before: Mapping[EntityKey, EntityState | None],
    ) -> list[EntityKey]:
        written: list[EntityKey] = []
        updates: list[tuple[dict[bytes, bytes], list[bytes]]] = []
        names: list[str] = []
        args: list[list[bytes | int]] = []
        for key, state in states.items():
            old = before.get(key)
            if old is not None and old.stored is None:
                msg = "write(): a `before` state must come from this store's read() or write()"
                raise OnlineStoreError(msg)
            changed, gone = _changes(state, old)
            if not changed and not gone:
                state.changed.clear()
                continue
            items = [x for pair in changed.items() for x in pair]
            # A token no other write uses, so readers' caches see the change.
            items += [_VERSION, b"%s%x" % (self._writer_token, next(self._writes))]
            written.append(key)
            updates.append((changed, gone))
            names.append(self.key(feature_set, key))
            expected = old.stored[b"o"] if old is not None else b""
            expire = expires_at_ms(feature_set, state)
            expire_arg = b"" if expire is None else b"%d" % expire
            args.append([expected, expire_arg, len(items), len(gone), *items, *gone])
        # One script call per chunk of entities of a hash slot: Redis Cluster needs all keys
        # of a call in one slot; standalone Redis has a single "slot".
        calls = []
        order: list[int] = []  # entity indexes in the order of the calls' results
        for group in _slot_groups(names, self._cluster):
            for chunk in _chunks([len(args[i]) for i in group]):
                entities = [group[c] for c in chunk]
                order += entities
                calls.append(([names[i] for i in entities], [x for i in entities for x in args[i]]))
        try:
            flat = [ok for chunk_result in self._apply.run_many(calls) for ok in chunk_result]
            results = [0] * len(flat)
            for i, ok in zip(order, flat, strict=True):
                results[i] = ok
        except redis.OutOfMemoryError as exc:
            # Redis refuses a script's first write when it started over maxmemory and never
            # stops one half-way, so each entity is stored whole or not at all (script calls
            # before the refused one may have stored theirs); a retry completes the write.
            msg = (
                f"Redis at {self.url} is full (maxmemory reached) and refused to store "
                f"entities of {feature_set.qualified_name}: raise its maxmemory "
                "(`redis-cli CONFIG SET maxmemory <bytes>`, or in redis.conf) or give it more "
                f"memory; no entity is stored half-way, and a retry completes the write ({exc})"
            )
            raise OnlineStoreFullError(msg) from exc
        except redis.RedisError as exc:
            msg = f"writing {len(states)} entities of {feature_set.qualified_name} to {self.url} failed: {exc}"
            raise OnlineStoreError(msg) from exc
        conflicts = []
        for key, (changed, gone), ok in zip(written, updates, results, strict=True):
            if ok:
                state = states[key]
                old = before.get(key)
                base = {} if old is None else old.stored
                stored = base if old is state else dict(base)  # in place, or a new record
                stored.update(changed)
                for name in gone:
                    stored.pop(name, None)
                state.stored = stored
                state.changed.clear()
            else:
                conflicts.append(key)
        return conflicts

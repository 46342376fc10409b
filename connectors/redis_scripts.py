"""Many calls of one Lua script in one round trip per Redis node, packed by hiredis.

A worker's batch writes its entities with one script call per chunk of entities, thousands
of arguments each. redis-py's pipeline packs every argument through a Python generator
(an ``isinstance`` and an encoder call per argument): 18 % of the batch processor's time in
a profile of 200k events, for work that ``hiredis.pack_command`` does in C in a tenth of it.
So the calls are packed here and sent on one of the client's pooled connections, with the
client's timeouts, and the replies read back in order, as a pipeline would.

Redis Cluster: every call's keys are in one hash slot (the caller groups them so). The calls
are grouped by the primary that owns their slot; each node's calls are written to it first,
then every node's replies read, so a batch costs one round trip per node, in parallel. A
node that lost the script (restarted, or a replica just promoted) answers ``NOSCRIPT``: the
script is loaded on that node and its calls sent again. A call answered ``MOVED``, ``ASK``,
``TRYAGAIN``, ``CLUSTERDOWN`` or ``READONLY`` (a failover or a resharding under way) did not
run: the slot map is refreshed and those calls sent again to their slot's current primary,
a few times with a short backoff. A node that does not answer fails the whole call (the
client's slot map is refreshed for the next one); the worker then retries its batch, which
is exact (``online_redis``'s compare-and-set by stored offsets).

``wait``: each node's calls are followed, on the same connection, by ``WAIT <replicas>
<timeout>``, which returns once that many replicas have the writes; fewer fails the call
(``NotReplicatedError``, and the slot map is read again), so a caller acknowledges nothing a
failover could lose. On a cluster a primary waits for at most the replicas the slot map
lists for it: after a failover the promoted replica has none until the failed node rejoins
(as its replica), and meanwhile its writes are kept by its append-only file, fsynced before
each reply (``headwater up`` runs every node so; ``durability_problem`` checks it), and no
failover can take its slots from it without a replica.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from headwater.connectors.redis_client import SyncRedisClient

__all__ = ["NotReplicatedError", "PackedScript", "ReplicaWait"]

Arg = bytes | str | int
Call = tuple[Sequence[Arg], Sequence[Arg]]

_REDIRECT_ATTEMPTS = 4
_REDIRECT_BACKOFF_S = 0.1
# Answers of a call that did not run on this node: send it again where its slot is now.
_REDIRECTS = (AskError, TryAgainError, ClusterDownError, ReadOnlyError)


class NotReplicatedError(redis.RedisError):
    """Fewer replicas than ``redis.wait_replicas`` confirmed the writes in time."""


class ReplicaWait:
    """``WAIT replicas timeout_ms`` after each node's writes (see the module doc)."""

    def __init__(self, replicas: int, timeout_ms: int) -> None:
        self.replicas = replicas
        self.timeout_ms = timeout_ms

    def check(self, confirmed: Any, wanted: int, node: str) -> None:
        if isinstance(confirmed, int) and confirmed >= wanted:
            return
        msg = (
            f"only {confirmed} of {wanted} replicas of the Redis node {node} confirmed the "
            f"writes within redis.wait_timeout_ms={self.timeout_ms} (redis.wait_replicas="
            f"{self.replicas}): nothing is acknowledged and the batch is retried; check the "
            "replica (`redis-cli -p <port> INFO replication`), or lower redis.wait_replicas at "
            "the risk of losing acknowledged states in the next failover"
        )
        raise NotReplicatedError(msg)


class PackedScript:
    """One Lua script, run by ``EVALSHA`` (loaded again on a node that lost it)."""

    def __init__(self, client: SyncRedisClient, source: str, wait: ReplicaWait | None = None):
        self._client = client
        self._source = source
        self._sha = client.register_script(source).sha
        self._wait = wait if wait is not None and wait.replicas > 0 else None

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """The reply of each ``(keys, args)`` call, in order, one round trip per node.

        Raises:
            redis.RedisError: the server refused a call (the first such error, after every
                reply was read, as a pipeline raises it), the connection failed, or
                (``NotReplicatedError``) too few replicas confirmed the writes.
        """
        if not calls:
            return []
        client = self._client
        if isinstance(client, redis.cluster.RedisCluster):
            replies = self._run_cluster(client, calls)
        else:
            wanted = self._wait.replicas if self._wait is not None else 0
            replies = self._run_node(Target(client, "server", wanted), calls)
        for reply in replies:
            if isinstance(reply, redis.RedisError):
                raise reply
        return replies

    def _run_node(self, target: Target, calls: Sequence[Call]) -> list[Any]:
        """Run ``calls`` on one server, loading the script again if the server lost it."""
        replies = self._round_trip(target, calls)
        self._rerun_lost(target, calls, replies)
        return replies

    def _rerun_lost(self, target: Target, calls: Sequence[Call], replies: list[Any]) -> None:
        """Calls answered ``NOSCRIPT`` (a restarted, flushed or just promoted server) did not
        run: load the script there and run them again, in place in ``replies``."""
        lost = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if not lost:
            return
        target.node.script_load(self._source)
        again = self._round_trip(target, [calls[i] for i in lost])
        for i, reply in zip(lost, again, strict=True):
            replies[i] = reply

    def _round_trip(self, target: Target, calls: Sequence[Call]) -> list[Any]:
        connection = self._send(target, calls)
        try:
            replies, confirmed = self._receive(connection, len(calls), target.replicas)
        finally:
            target.node.connection_pool.release(connection)
        self._check_wait(target, replies, confirmed)
        return replies

    def _check_wait(self, target: Target, replies: list[Any], confirmed: Any) -> None:
        # A call that failed fails the batch anyway; the wait counts only for full success.
        if self._wait is None or not target.replicas:
            return
        if not any(isinstance(r, redis.RedisError) for r in replies):
            self._wait.check(confirmed, target.replicas, target.name)

    def _run_cluster(self, cluster: redis.cluster.RedisCluster, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(_REDIRECT_ATTEMPTS):
            try:
                self._run_cluster_once(cluster, calls, todo, replies)
            except (redis.ConnectionError, redis.TimeoutError, NotReplicatedError, OSError):
                _refresh(cluster)  # a node may be gone: learn who serves its slots now
                raise
            todo = [i for i in todo if isinstance(replies[i], _REDIRECTS)]
            if not todo:
                break
            _refresh(cluster)
            time.sleep(_REDIRECT_BACKOFF_S * 2**attempt)
        return replies

    def _run_cluster_once(
        self,
        cluster: redis.cluster.RedisCluster,
        calls: Sequence[Call],
        todo: list[int],
        replies: list[Any],
    ) -> None:
        """Send the calls of ``todo`` to every node, then read every node's replies."""
        wanted = self._wait.replicas if self._wait is not None else 0
        groups = _by_node(cluster, calls, todo, wanted)
        sent: list[tuple[Target, Any]] = []
        try:
            for target, indexes in groups:
                sent.append((target, self._send(target, [calls[i] for i in indexes])))
            results = [
                self._receive(connection, len(indexes), target.replicas)
                for (target, connection), (_, indexes) in zip(sent, groups, strict=True)
            ]
        except BaseException:
            for _, connection in sent:
                connection.disconnect()  # replies may be pending on it
            raise
        finally:
            for target, connection in sent:
                target.node.connection_pool.release(connection)
        for (target, indexes), (got, confirmed) in zip(groups, results, strict=True):
            self._check_wait(target, got, confirmed)
            self._rerun_lost(target, [calls[i] for i in indexes], got)
            for i, reply in zip(indexes, got, strict=True):
                replies[i] = reply

    def _send(self, target: Target, calls: Sequence[Call]) -> Any:
        """Write ``calls`` (and the ``WAIT``) on a pooled connection of the node; returns the
        connection, to read the replies from and release."""
        packed = b"".join(
            # hiredis' stub types the tuple as one item; it takes any number.
            hiredis.pack_command(("EVALSHA", self._sha, len(keys), *keys, *args))  # type: ignore[arg-type]
            for keys, args in calls
        )
        if self._wait is not None and target.replicas:
            wait = ("WAIT", target.replicas, self._wait.timeout_ms)
            packed += hiredis.pack_command(wait)  # type: ignore[arg-type]
        pool = target.node.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([packed])  # type: ignore[no-untyped-call]
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            pool.release(connection)
            raise
        return connection

    def _receive(self, connection: Any, count: int, replicas: int) -> tuple[list[Any], Any]:
        """``count`` replies (errors in place) and the ``WAIT`` answer (``None`` without)."""
        try:
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            waited = self._wait is not None and replicas
            confirmed = connection.read_response() if waited else None
            return replies, confirmed
        except BaseException:
            # A half-read connection must not go back to the pool with replies pending.
            connection.disconnect()
            raise


@dataclass(frozen=True)
class Target:
    """A server to run calls on, how messages name it, and how many replicas must confirm
    its writes."""

    node: redis.Redis
    name: str
    replicas: int


def _by_node(
    cluster: redis.cluster.RedisCluster, calls: Sequence[Call], todo: list[int], wanted: int
) -> list[tuple[Target, list[int]]]:
    """The calls of ``todo`` grouped by the primary owning their keys' slot. Each primary's
    writes wait for ``wanted`` replicas, or for as many as the cluster lists for its slots:
    a replica marked failed is left out of the slot map (and cannot be promoted), and a
    primary without one keeps its writes in its append-only file, fsynced before it answers."""
    groups: dict[str, tuple[Target, list[int]]] = {}
    encoder = cluster.get_encoder()  # type: ignore[no-untyped-call]
    manager = cluster.nodes_manager
    for i in todo:
        slot = key_slot(encoder.encode(calls[i][0][0]))
        try:
            node = manager.get_node_from_slot(slot)
        except RedisClusterException as exc:  # the slot map lacks it mid-failover
            _refresh(cluster)
            msg = f"hash slot {slot} has no primary yet: {exc}"
            raise ClusterDownError(msg) from exc
        group = groups.get(node.name)
        if group is None:
            with manager._lock:  # what get_node_from_slot reads under it
                listed = len(manager.slots_cache.get(slot) or [node]) - 1
            target = Target(cluster.get_redis_connection(node), node.name, min(wanted, listed))
            group = groups[node.name] = (target, [])
        group[1].append(i)
    return list(groups.values())


def _refresh(cluster: redis.cluster.RedisCluster) -> None:
    """Read the slot map again (best effort: while a failover is under way no node may
    answer; the next call tries again)."""
    try:
        cluster.nodes_manager.initialize()
    except (redis.RedisError, RedisClusterException, OSError):
        pass

"""``PackedScript``: many script calls in one round trip against the real Redis, replies in
order, a script the server does not have loaded on the way, and errors raised like a
pipeline raises them, with the connection still usable afterwards."""

from __future__ import annotations

import uuid

import pytest
import redis

from headwater.connectors.redis_scripts import PackedScript

pytestmark = pytest.mark.integration


def test_calls_reply_in_order_and_an_unloaded_script_is_loaded(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-packed-{uuid.uuid4().hex}"
    # A script text no server has seen: the first EVALSHA gets NOSCRIPT.
    source = f"-- {prefix}\nredis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) * 2"
    script = PackedScript(client, source)
    keys = [f"{prefix}:{i}" for i in range(300)]
    try:
        replies = script.run_many([([k], [i]) for i, k in enumerate(keys)])
        assert replies == [2 * i for i in range(300)]
        assert client.get(keys[7]) == b"7"
        assert script.run_many([([keys[0]], [b"21"])]) == [42]
    finally:
        client.delete(*keys)
        client.close()


def test_a_refused_call_raises_after_the_others_ran(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-packed-{uuid.uuid4().hex}"
    script = PackedScript(client, "return redis.call('INCR', KEYS[1])")
    text_key, counter = f"{prefix}:text", f"{prefix}:n"
    client.set(text_key, "not a number")
    try:
        with pytest.raises(redis.ResponseError, match="not an integer"):
            script.run_many([([counter], []), ([text_key], []), ([counter], [])])
        assert client.get(counter) == b"2"  # both good calls ran, as in a pipeline
        assert script.run_many([([counter], [])]) == [3]  # the connection is clean
    finally:
        client.delete(text_key, counter)
        client.close()

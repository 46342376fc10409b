"""``redis.cluster`` settings: what a cluster URL may be, extra seed nodes, and how many
replicas a batch waits for by default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from headwater.connectors.redis_client import redis_display
from headwater.schemas.settings import RedisSettings


def test_a_cluster_waits_for_one_replica_by_default_and_a_single_server_for_none() -> None:
    assert RedisSettings(url="redis://10.0.0.7:6379", cluster=True).replicas_to_wait == 1
    assert RedisSettings(url="redis://10.0.0.7:6379/0").replicas_to_wait == 0
    chosen = RedisSettings(url="redis://h:6379", cluster=True, wait_replicas=2)
    assert chosen.replicas_to_wait == 2
    assert RedisSettings(url="redis://h:6379", cluster=True, wait_replicas=0).replicas_to_wait == 0


@pytest.mark.parametrize("url", ["redis://h:6379/3", "unix:///run/redis.sock"])
def test_a_cluster_url_names_a_node_and_no_database(url: str) -> None:
    with pytest.raises(
        ValidationError, match=r"redis\.cluster is set but url .* redis://host:port"
    ):
        RedisSettings(url=url, cluster=True)


def test_cluster_nodes_are_host_port_and_need_cluster() -> None:
    ok = RedisSettings(url="rediss://a:6379", cluster=True, cluster_nodes=["b:6379", "c:6380"])
    assert ok.cluster_nodes == ["b:6379", "c:6380"]
    with pytest.raises(ValidationError, match="not host:port"):
        RedisSettings(url="redis://a:6379", cluster=True, cluster_nodes=["redis://b:6379"])
    with pytest.raises(ValidationError, match="HEADWATER_REDIS__CLUSTER=true"):
        RedisSettings(url="redis://a:6379", cluster_nodes=["b:6379"])


def test_messages_name_a_cluster_and_never_its_password() -> None:
    shown = redis_display(RedisSettings(url="redis://:s3cret@h:6379", cluster=True))
    assert "s3cret" not in shown and shown.endswith("(cluster)")

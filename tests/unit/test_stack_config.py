"""Pure logic of ``headwater.stack``: parsing, rendering and the jar cache rules, no services."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import yaml

from headwater.schemas.errors import ConfigError, FeatureStoreError
from headwater.stack.errors import (
    DependencyResolutionError,
    StackConfigError,
    StackError,
    ToolMissingError,
)
from headwater.stack.kafka_config import (
    LOG4J2_YAML,
    cluster_layout,
    heap_flags,
    parse_bootstrap,
    parse_java_version,
    pom_kafka_version,
    render_server_properties,
    replication,
)
from headwater.stack.process import read_pid_file, tail, write_pid_file
from headwater.stack.redis import parse_redis_url
from headwater.stack.toolchain import PACKAGE_POM, check_java, resolve_jars


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost:19092,otherhost:9092", ("localhost", 19092)),
        (" PLAINTEXT://broker:9094 ", ("broker", 9094)),
        ("[::1]:9092", ("::1", 9092)),
    ],
)
def test_parse_bootstrap_takes_the_first_entry(servers: str, expected: tuple[str, int]) -> None:
    assert parse_bootstrap(servers) == expected


@pytest.mark.parametrize("servers", ["", "broker", "broker:port", "broker:0", "broker:70000"])
def test_parse_bootstrap_rejects_unusable_entries(servers: str) -> None:
    with pytest.raises(StackConfigError, match=r"HEADWATER_KAFKA__BOOTSTRAP_SERVERS|port"):
        parse_bootstrap(servers)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "11.0.2-ea" 2019-01-15', 11),
        ("bash: java: command not found", None),
    ],
)
def test_parse_java_version(output: str, major: int | None) -> None:
    assert parse_java_version(output) == major


def test_server_properties_describe_one_kraft_node(tmp_path: Path) -> None:
    props = _properties(
        render_server_properties(
            host="127.0.0.1", port=19092, controller_port=19093, data_dir=tmp_path / "data"
        )
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # --standalone refuses a static voter set
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in (
        "offsets.topic.num.partitions",
        "num.partitions",
        "transaction.state.log.min.isr",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_nodes_take_every_other_port_from_the_two_settings() -> None:
    nodes = cluster_layout("127.0.0.1:9092,127.0.0.1:9094", 9093, 3)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert [n.address for n in nodes] == ["127.0.0.1:9092", "127.0.0.1:9094", "127.0.0.1:9096"]
    assert [(n.port, n.controller_port) for n in cluster_layout("h:9092", 9093, 1)] == [
        (9092, 9093)
    ]


def test_cluster_ports_that_collide_or_overflow_are_refused() -> None:
    with pytest.raises(StackConfigError, match="CONTROLLER_PORT"):
        cluster_layout("127.0.0.1:9092", 9094, 3)  # broker 2 would take controller 1's port
    with pytest.raises(StackConfigError, match="65535"):
        cluster_layout("127.0.0.1:65530", 65531, 4)


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_replication_keeps_three_copies_and_survives_one_node(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert replication(brokers) == expected


def test_server_properties_of_a_cluster_node_name_the_static_quorum(tmp_path: Path) -> None:
    voters = cluster_layout("127.0.0.1:19092", 19093, 3)
    props = _properties(
        render_server_properties(
            host="127.0.0.1",
            port=19094,
            controller_port=19095,
            data_dir=tmp_path,
            node_id=2,
            voters=voters,
        )
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    )
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "2", key


def test_server_properties_bracket_ipv6_listeners(tmp_path: Path) -> None:
    props = _properties(
        render_server_properties(host="::1", port=9092, controller_port=9093, data_dir=tmp_path)
    )
    assert props["listeners"] == "PLAINTEXT://[::1]:9092,CONTROLLER://[::1]:9093"


def test_log4j2_config_is_yaml_writing_to_the_logs_dir() -> None:
    config = yaml.safe_load(LOG4J2_YAML)["Configuration"]
    assert config["Appenders"]["RollingFile"][0]["fileName"] == "${sys:kafka.logs.dir}/server.log"


@pytest.mark.parametrize(
    ("heap", "flags"),
    [
        ("768m", ["-Xms256m", "-Xmx768m"]),
        ("2g", ["-Xms256m", "-Xmx2g"]),
        ("128m", ["-Xms128m", "-Xmx128m"]),
    ],
)
def test_heap_flags_never_put_xms_above_xmx(heap: str, flags: list[str]) -> None:
    assert heap_flags(heap) == flags


@pytest.mark.parametrize("heap", ["lots", "1x", "0m", "16m"])
def test_heap_flags_reject_bad_sizes(heap: str) -> None:
    with pytest.raises(StackConfigError, match=r"stack\.kafka_heap"):
        heap_flags(heap)


def test_pom_pins_the_kafka_version() -> None:
    assert pom_kafka_version(PACKAGE_POM) == "4.1.1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None)),
        ("redis://localhost/1", ("localhost", 6379, None)),
        ("redis://:s%40cret@127.0.0.1:6380/0", ("127.0.0.1", 6380, "s@cret")),
    ],
)
def test_parse_redis_url(url: str, expected: tuple[str, int, str | None]) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize("url", ["rediss://127.0.0.1:6379/0", "unix:///tmp/redis.sock"])
def test_parse_redis_url_rejects_what_a_local_server_cannot_serve(url: str) -> None:
    with pytest.raises(StackConfigError, match="HEADWATER_REDIS__URL"):
        parse_redis_url(url)


def test_config_errors_belong_to_both_families() -> None:
    assert issubclass(StackConfigError, StackError)
    assert issubclass(StackConfigError, ConfigError)
    assert issubclass(StackError, FeatureStoreError)


def test_pid_file_round_trip(tmp_path: Path) -> None:
    pid_file = tmp_path / "stack" / "kafka.pid"
    assert read_pid_file(pid_file) is None
    write_pid_file(pid_file, 4242)
    assert read_pid_file(pid_file) == 4242
    pid_file.write_text("garbage")
    assert read_pid_file(pid_file) is None


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "kafka.out"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""


def _fake_program(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(tmp_path / "bin", "java", "echo 'java version \"1.8.0_292\"' >&2\n")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ToolMissingError, match=r"^Java 17\+ not found .*openjdk-17-jre-headless"):
        check_java()


def _complete_cache(cache: Path) -> Path:
    libs = cache / "kafka-4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    digest = hashlib.sha256(PACKAGE_POM.read_text().encode()).hexdigest()
    (cache / "kafka-4.1.1" / ".complete").write_text(digest + "\n")
    return libs


def test_cached_jars_need_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = _complete_cache(tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert resolve_jars(tmp_path / "cache") == libs


def test_half_copied_jars_are_resolved_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _complete_cache(tmp_path / "cache")
    (tmp_path / "cache" / "kafka-4.1.1" / ".complete").unlink()  # copy was interrupted
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolMissingError, match=r"^Maven \(mvn\) not found"):
        resolve_jars(tmp_path / "cache")


def test_maven_failure_becomes_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(
        tmp_path / "bin",
        "mvn",
        "echo '[ERROR] Could not transfer artifact kafka_2.13: Network is unreachable'\nexit 1\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(DependencyResolutionError) as caught:
        resolve_jars(tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("Maven cannot reach Maven Central to fetch Kafka 4.1.1")
    assert "Network is unreachable" in message and "\n" not in message
    root = tmp_path / "cache" / "kafka-4.1.1"
    assert not (root / ".complete").exists()
    assert not list(root.glob("libs*"))

"""docker-compose.yml agrees with the code it deploys.

No Docker engine is needed: the file is parsed with PyYAML and checked against the pinned Kafka
version (headwater/stack/pom.xml), the ``Settings`` model and the ``headwater`` subcommands.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any, cast

import pytest
import yaml
from pydantic import BaseModel

from headwater.schemas.settings import Settings
from headwater.stack.redis import DURABILITY_ARGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
POM = ROOT / "headwater" / "stack" / "pom.xml"
DOCKERFILE = ROOT / "Dockerfile"

SUBCOMMANDS = ["apply", "worker", "serve", "demo", "up", "down", "ingest", "retrieve"]
HEADWATER_SERVICES = ("apply", "worker", "api")
PREFIX = "HEADWATER_"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], compose["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _headwater_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in _env(service).items() if k.startswith(PREFIX)}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, from the short ``src:dst[:mode]`` or the long syntax."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
        else:
            source, target = vol.get("source", ""), vol["target"]
        out.append((source, target))
    return out


def _kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, "pom.xml has no <kafka.version>"
    return node.text.strip()


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` -> {NAME: "host:port"}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        out[name] = address
    return out


def _settings_field(var: str) -> tuple[str, ...]:
    """The path of ``Settings`` fields a HEADWATER_* variable sets; fails if there is none."""
    parts = tuple(p.lower() for p in var.removeprefix(PREFIX).split("__"))
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        assert part in model.model_fields, f"{var}: {part!r} is not a field of {model.__name__}"
        annotation = model.model_fields[part].annotation
        if i < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{var}: {part!r} is not a settings section"
            )
            model = annotation
    return parts


def _settings_from(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, directory: Path
) -> Settings:
    """``Settings`` as a container with exactly ``env`` would load them (no other
    HEADWATER_* variable, no stray headwater.yaml)."""
    import os

    for var in list(os.environ):
        if var.startswith(PREFIX):
            monkeypatch.delenv(var)
    monkeypatch.chdir(directory)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Settings()


def test_services_exist(services: dict[str, Any]) -> None:
    assert {"kafka", "redis", "apply", "worker", "api"} <= set(services)


def test_kafka_image_matches_pinned_version(services: dict[str, Any]) -> None:
    image, _, tag = services["kafka"]["image"].rpartition(":")
    assert image == "apache/kafka"
    assert tag == _kafka_version()


def test_kafka_is_single_node_kraft(services: dict[str, Any]) -> None:
    env = _env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = _listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    protocol_map = dict(
        p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocol_map)
    # The only voter is this node, on the controller listener's port.
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert "," not in voter
    assert node_id == env["KAFKA_NODE_ID"]
    assert voter.rpartition(":")[2] == listeners[controller].rpartition(":")[2]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    test = services["kafka"]["healthcheck"]["test"]
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in " ".join(test)


def test_advertised_listener_is_the_bootstrap_address(services: dict[str, Any]) -> None:
    env = _env(services["kafka"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    listeners = _listeners(env["KAFKA_LISTENERS"])
    for name in HEADWATER_SERVICES:
        bootstrap = _env(services[name])["HEADWATER_KAFKA__BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised.values(), name
        # ...and the broker actually listens on that port under the same listener name.
        (listener,) = [n for n, a in advertised.items() if a == bootstrap]
        assert listeners[listener].rpartition(":")[2] == bootstrap.rpartition(":")[2]


def test_kafka_keeps_its_log_on_a_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """`docker compose down` must not lose the raw events (the source of truth)."""
    kafka = services["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{log_dirs}" in kafka["volumes"]
    assert "kafka-data" in compose["volumes"]
    assert kafka["environment"]["CLUSTER_ID"]  # the same cluster after a restart


def test_redis_is_durable_like_the_local_one_and_checked(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    command = redis["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[0] == "redis-server"
    assert tuple(command[1:]) == DURABILITY_ARGS
    assert "redis-data:/data" in redis["volumes"]  # the official image's working directory
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_headwater_services_share_the_env_block(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    shared = {k: str(v) for k, v in compose["x-headwater-env"].items()}
    assert shared["HEADWATER_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert shared["HEADWATER_REDIS__URL"] == "redis://redis:6379/0"
    for name in HEADWATER_SERVICES:
        env = _headwater_env(services[name])
        assert shared.items() <= env.items(), name
    assert _env(services["api"])["HEADWATER_SERVING__HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", HEADWATER_SERVICES)
def test_headwater_env_maps_to_settings_fields(name: str, services: dict[str, Any]) -> None:
    env = _headwater_env(services[name])
    assert env
    for var in env:
        _settings_field(var)


@pytest.mark.parametrize("name", HEADWATER_SERVICES)
def test_headwater_env_validates(
    name: str, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = _headwater_env(services[name])
    settings = _settings_from(env, monkeypatch, tmp_path)
    for var, value in env.items():
        got: Any = settings
        for part in _settings_field(var):
            got = getattr(got, part)
        assert str(got) == value, var
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.home == Path("/data")


def test_commands_are_headwater_subcommands(services: dict[str, Any]) -> None:
    expected = {"apply": "apply", "worker": "worker", "api": "serve"}
    for name, subcommand in expected.items():
        command = services[name]["command"]
        command = command if isinstance(command, list) else command.split()
        assert command[0] == "headwater", name
        assert command[1] in SUBCOMMANDS, name
        assert command[1] == subcommand, name
    apply_args = services["apply"]["command"][2:]
    assert apply_args == ["examples/"]


def test_startup_order(services: dict[str, Any]) -> None:
    apply_deps = services["apply"]["depends_on"]
    assert apply_deps["kafka"]["condition"] == "service_healthy"
    assert apply_deps["redis"]["condition"] == "service_healthy"
    for name in ("worker", "api"):
        deps = services[name]["depends_on"]
        assert deps["apply"]["condition"] == "service_completed_successfully", name
    assert services["worker"]["restart"] == "unless-stopped"
    for name in HEADWATER_SERVICES:
        assert services[name]["build"] == ".", name


def test_only_the_api_is_published_and_only_on_loopback(services: dict[str, Any]) -> None:
    """Nothing listens beyond the machine by default: publishing wider is a decision (API
    keys first), and Kafka and Redis stay inside the compose network."""
    assert [str(p) for p in services["api"]["ports"]] == ["127.0.0.1:8000:8000"]
    assert [str(p) for p in services["scale-api"]["ports"]] == ["127.0.0.1:8001:8000"]
    published = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert published == ["api", "scale-api"]


def test_home_volume_is_shared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert "headwater-data" in compose["volumes"]
    for name in HEADWATER_SERVICES:
        home = PurePosixPath(_env(services[name])["HEADWATER_HOME"])
        sources = [src for src, dst in _mounts(services[name]) if PurePosixPath(dst) == home]
        assert sources == ["headwater-data"], name


def test_dockerfile_matches_compose() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert "WORKDIR /app" in lines
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    cmds = [ln for ln in lines if ln.startswith("CMD ")]
    assert cmds[-1] == 'CMD ["headwater", "serve"]'


# The `scale` profile ------------------------------------------------------------------------

SCALE_NODES = ("kafka-1", "kafka-2", "kafka-3")
REDIS_NODES = tuple(f"redis-{i}" for i in range(1, 7))
SCALE_SERVICES = ("scale-apply", "scale-worker", "scale-api")


def test_scale_profile_is_opt_in(services: dict[str, Any]) -> None:
    scale = {*SCALE_NODES, *REDIS_NODES, *SCALE_SERVICES, "minio", "minio-bucket", "postgres"}
    scale.add("redis-cluster-create")
    for name, service in services.items():
        assert (service.get("profiles") == ["scale"]) == (name in scale), name


def test_scale_kafka_is_a_three_node_quorum_like_the_local_one(services: dict[str, Any]) -> None:
    from headwater.stack.kafka_config import replication

    factor, min_isr = replication(3)
    voters = set()
    for i, name in enumerate(SCALE_NODES, start=1):
        env = _env(services[name])
        assert services[name]["image"] == f"apache/kafka:{_kafka_version()}"
        assert env["KAFKA_NODE_ID"] == str(i)
        assert _listeners(env["KAFKA_ADVERTISED_LISTENERS"]) == {"PLAINTEXT": f"{name}:9092"}
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(factor)
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == str(factor)
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == str(factor)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == str(min_isr)
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == str(min_isr)
        assert (f"{name}-data", "/var/lib/kafka/data") in _mounts(services[name])
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}


def test_scale_redis_is_a_durable_six_node_cluster_like_the_local_one(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    from headwater.stack.redis_cluster import CLUSTER_NODES

    assert len(REDIS_NODES) == CLUSTER_NODES
    conf: dict[str, str] = {}
    for line in compose["configs"]["redis-cluster-conf"]["content"].splitlines():
        name, _, value = line.partition(" ")
        conf[name] = value
    # The single server's durability (DURABILITY_ARGS), as config-file lines.
    pairs = zip(DURABILITY_ARGS[::2], DURABILITY_ARGS[1::2], strict=True)
    for flag, value in pairs:
        assert conf[flag.removeprefix("--")] == (value or '""'), flag
    assert conf["cluster-enabled"] == "yes"
    assert conf["cluster-preferred-endpoint-type"] == "hostname"
    timeout = Settings().stack.redis_cluster_node_timeout_ms
    assert conf["cluster-node-timeout"] == str(timeout)
    for i, name in enumerate(REDIS_NODES, start=1):
        node = services[name]
        assert node["image"] == "redis:7"
        target = node["configs"][0]["target"]
        assert node["command"] == [
            "redis-server",
            target,
            "--cluster-announce-hostname",
            name,
        ]
        assert node["hostname"] == name
        assert _mounts(node) == [(f"redis-{i}-data", "/data")]
        assert f"redis-{i}-data" in compose["volumes"]
        assert node["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    create = services["redis-cluster-create"]
    script = create["command"][0]
    assert "--cluster-replicas 1" in script and "cluster_state:ok" in script
    assert set(create["depends_on"]) == set(REDIS_NODES)
    assert all(d["condition"] == "service_healthy" for d in create["depends_on"].values())


@pytest.mark.parametrize("name", SCALE_SERVICES)
def test_scale_services_validate_and_reach_every_store(
    name: str, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = _headwater_env(services[name])
    # ${VAR:-} is compose's: stand in a value, as compose would from .env.
    given = {
        var: value.replace("${POSTGRES_PASSWORD:-}", "pw").replace("${MINIO_ROOT_PASSWORD:-}", "pw")
        for var, value in env.items()
    }
    settings = _settings_from(given, monkeypatch, tmp_path)
    assert settings.kafka.bootstrap_servers.split(",") == [f"{n}:9092" for n in SCALE_NODES]
    location = settings.offline_location
    assert location.root == "s3://headwater/offline"
    assert location.storage_options["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert location.storage_options["AWS_SECRET_ACCESS_KEY"] == "pw"
    assert "pw" not in repr(settings)
    assert settings.catalog.url is not None and "@postgres:5432/" in settings.catalog.url
    assert settings.redis.cluster
    nodes = [settings.redis.url.removeprefix("redis://"), *settings.redis.cluster_nodes]
    assert nodes == [f"{n}:6379" for n in REDIS_NODES]
    assert settings.redis.replicas_to_wait == 1
    # Passwords come from .env through compose, never written in the file.
    for var in (
        "HEADWATER_CATALOG__PASSWORD",
        "HEADWATER_OFFLINE__SECRET_OPTIONS__AWS_SECRET_ACCESS_KEY",
    ):
        assert env[var].startswith("${"), var
    deps = services[name]["depends_on"]
    for store in (*SCALE_NODES, "postgres"):
        assert deps[store]["condition"] == "service_healthy", (name, store)
    for job in ("minio-bucket", "redis-cluster-create"):
        assert deps[job]["condition"] == "service_completed_successfully", (name, job)
    assert services["scale-worker"]["deploy"]["replicas"] == 3

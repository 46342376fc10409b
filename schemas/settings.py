"""One settings object for every command: ``HEADWATER_*`` variables and ``headwater.yaml``.

Nested sections use ``__`` in variable names: ``HEADWATER_KAFKA__BOOTSTRAP_SERVERS``,
``HEADWATER_REDIS__URL``. All local state lives under ``home`` (default ``./.headwater``) so
``apply``, ``worker``, ``serve``, ``ingest`` and ``retrieve`` started in one directory agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from headwater.schemas.errors import ConfigError
from headwater.schemas.offline_location import OfflineLocation, OfflineSettings
from headwater.schemas.redaction import redact_url

__all__ = [
    "CatalogSettings",
    "KafkaSettings",
    "OfflineSettings",
    "RedisSettings",
    "SecuritySettings",
    "ServingSettings",
    "Settings",
    "StackSettings",
    "WorkerSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list; the same value configures confluent-kafka and faust."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of topics that ``apply`` creates."""
    replication_factor: int | None = Field(default=None, ge=1)
    """Replication factor of topics that ``apply`` creates; unset takes the brokers'
    ``default.replication.factor`` (1 on ``headwater up``'s single node, 3 on its
    ``--kafka-brokers 3`` cluster and on most managed services)."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """``min.insync.replicas`` of topics that ``apply`` creates: how many copies must have an
    event before Kafka acknowledges it (every Headwater producer asks for acks=all). Unset
    takes the brokers' default."""
    retention_ms: int = -1
    """Retention of source topics that ``apply`` creates; -1 keeps every event, so a new
    feature-set version can be computed from the whole history."""
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    """Put before the default topic names of sources that name none (``<prefix>raw.<source>``,
    ``<prefix>dlq.<source>``) when ``apply`` registers them; the catalog keeps the full names.
    ``headwater demo`` sets its own (``headwater-demo.``) so it never touches a topic that a
    source of yours could own."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every client (producer, admin, consumer, DLQ, worker) talks to the brokers:
    ``SASL_*`` authenticates with ``sasl_*``, ``*SSL`` encrypts with the ``ssl_*`` files."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism; required with a ``SASL_*`` protocol. Prefer SCRAM (the password never
    crosses the wire); PLAIN sends it, so use it only with ``SASL_SSL`` or on loopback."""
    sasl_username: str | None = None
    """SASL user; required with a ``SASL_*`` protocol."""
    sasl_password: SecretStr | None = None
    """SASL password; required with a ``SASL_*`` protocol. Never logged nor shown; pass it
    in ``HEADWATER_KAFKA__SASL_PASSWORD`` (or headwater.yaml with mode 0600), never as an
    argument."""
    ssl_ca_location: Path | None = None
    """PEM file of the CA that signed the brokers' certificates (``SSL``/``SASL_SSL``);
    unset uses the system's trust store."""
    ssl_certificate_location: Path | None = None
    """PEM client certificate, for brokers that require mutual TLS; needs ``ssl_key_location``."""
    ssl_key_location: Path | None = None
    """PEM private key of ``ssl_certificate_location``."""
    ssl_key_password: SecretStr | None = None
    """Password of an encrypted ``ssl_key_location``; never logged nor shown."""

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        """Refuse half-configured security: a client would otherwise connect in the clear,
        or fail later with librdkafka's far less helpful message."""
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                msg = (
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}: "
                    "set HEADWATER_KAFKA__" + "/HEADWATER_KAFKA__".join(m.upper() for m in missing)
                )
                raise ValueError(msg)
        else:
            given = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is not None
            ]
            if given:
                msg = (
                    f"{', '.join(given)} set but security_protocol is {self.security_protocol}, "
                    "so they would be ignored and the client would not authenticate: set "
                    "HEADWATER_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT (or SASL_SSL)"
                )
                raise ValueError(msg)
        tls_files = [
            name
            for name in (
                "ssl_ca_location",
                "ssl_certificate_location",
                "ssl_key_location",
                "ssl_key_password",
            )
            if getattr(self, name) is not None
        ]
        if tls_files and not tls:
            msg = (
                f"{', '.join(tls_files)} set but security_protocol is {self.security_protocol} "
                "(no TLS): set HEADWATER_KAFKA__SECURITY_PROTOCOL=SSL (or SASL_SSL)"
            )
            raise ValueError(msg)
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            msg = (
                "ssl_certificate_location and ssl_key_location go together (mutual TLS): "
                "set both, or neither"
            )
            raise ValueError(msg)
        return self


_HOST_PORT = re.compile(r"[^\s:/@]+:\d{1,5}")


class RedisSettings(_Section):
    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    """Online store, as a standard ``redis://host:port/db`` URL (``rediss://`` for TLS). A
    password written in it is accepted but hidden everywhere it is shown; prefer
    ``password``."""
    key_prefix: str = Field(default="hw", pattern=r"^[A-Za-z0-9._-]+$")
    """First part of every online key (``<prefix>:<set>:v<version>:{<entity>}``); the demo
    uses its own (``hw-demo``) so it never writes or deletes a key of yours."""
    username: str | None = None
    """Redis ACL user (Redis 6+); unset authenticates as ``default`` when a password is set."""
    password: SecretStr | None = None
    """Password of ``username`` (or of ``requirepass``); never logged nor shown. Pass it in
    ``HEADWATER_REDIS__PASSWORD``, never as an argument."""
    ssl_ca_certs: Path | None = None
    """PEM file of the CA that signed the server's certificate (``rediss://`` only); unset
    uses the system's trust store."""
    ssl_certfile: Path | None = None
    """PEM client certificate, for servers with ``tls-auth-clients yes``; needs ``ssl_keyfile``."""
    ssl_keyfile: Path | None = None
    """PEM private key of ``ssl_certfile``."""
    ssl_check_hostname: bool = True
    """Whether the server certificate must name the URL's host (``rediss://`` only)."""
    cluster: bool = False
    """``url`` is one node of a Redis Cluster (cluster mode enabled: a local ``headwater up
    --redis-cluster``, ElastiCache cluster mode, Redis Enterprise/Cloud's cluster API): the
    client discovers the other nodes from it, sends each key to the primary of its slot and
    follows failovers. The URL then names no database (``redis://host:port``)."""
    cluster_nodes: list[str] = Field(default_factory=list)
    """More ``host:port`` nodes of the cluster (``redis.cluster``) to discover it from when
    the URL's node is down: a process that starts during a failover of that node finds the
    cluster through them. Managed services' configuration endpoint needs none."""
    wait_replicas: int | None = Field(default=None, ge=0)
    """Replicas that must confirm a batch's writes (``WAIT``) before the worker acknowledges
    its Kafka offsets; a shortfall fails the batch, which is retried, never acknowledged, so
    a failover cannot lose an acknowledged state. Unset: 1 with ``cluster``, else 0."""
    wait_timeout_ms: int = Field(default=2000, ge=1)
    """How long one ``WAIT`` for ``wait_replicas`` replicas may take before the batch fails
    (and is retried after a backoff)."""

    @model_validator(mode="after")
    def _check_security(self) -> RedisSettings:
        """Refuse settings that would be silently ignored or contradict each other."""
        tls_files = [
            name
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if tls_files and not self.url.startswith("rediss://"):
            msg = (
                f"{', '.join(tls_files)} set but url {redact_url(self.url)!r} is not TLS: "
                "use a rediss:// URL"
            )
            raise ValueError(msg)
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            msg = "ssl_certfile and ssl_keyfile go together (mutual TLS): set both, or neither"
            raise ValueError(msg)
        if self.password is not None and redact_url(self.url) != self.url:
            msg = (
                "a password is set both in url and in password: keep it only in password "
                "(HEADWATER_REDIS__PASSWORD) and remove it from the URL"
            )
            raise ValueError(msg)
        if self.username is not None and self.password is None:
            msg = "username set without password: set HEADWATER_REDIS__PASSWORD"
            raise ValueError(msg)
        bad = [n for n in self.cluster_nodes if not _HOST_PORT.fullmatch(n)]
        if bad:
            msg = f"redis.cluster_nodes {bad} are not host:port (e.g. 10.0.0.7:6379)"
            raise ValueError(msg)
        if self.cluster_nodes and not self.cluster:
            msg = "redis.cluster_nodes set but redis.cluster is not: set HEADWATER_REDIS__CLUSTER=true"
            raise ValueError(msg)
        if self.cluster:
            path = urlsplit(self.url).path.strip("/")
            if self.url.startswith("unix://") or path not in ("", "0"):
                msg = (
                    f"redis.cluster is set but url {redact_url(self.url)!r} is not "
                    "redis://host:port (or rediss://): a Redis Cluster has no unix socket "
                    "and only database 0; set HEADWATER_REDIS__URL=redis://<node>:<port>"
                )
                raise ValueError(msg)
        return self

    @property
    def replicas_to_wait(self) -> int:
        """``wait_replicas``, or its default: 1 for a cluster (each primary has a replica)."""
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if self.cluster else 0

    def __repr_args__(self) -> Any:
        # The URL may hold a password: show it masked, as every message does.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" else value


class StackSettings(_Section):
    """The local services that ``headwater up`` starts (a KRaft Kafka broker and redis-server)."""

    controller_port: int = 9093
    """Port of the KRaft controller listener of the local broker (the broker port comes from
    ``kafka.bootstrap_servers``)."""
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    """Nodes of the local Kafka cluster ``up`` starts (``headwater up --kafka-brokers 3``).
    Node k listens at the ``kafka.bootstrap_servers`` port + 2(k-1) and its controller at
    ``controller_port`` + 2(k-1). With 3 or more, topics and Kafka's internal topics keep 3
    copies and acknowledged writes 2 (``min.insync.replicas``), so one node may fail."""
    kafka_heap: str = "768m"
    """JVM heap (-Xmx) of the local broker."""
    cache_dir: Path = Path.home() / ".cache" / "headwater"
    """Where resolved Kafka jars are kept between runs; shared by every project on the machine."""
    start_timeout_s: float = 120.0
    """How long ``up`` waits for a service to answer before giving up."""
    redis_cluster_node_timeout_ms: int = Field(default=3000, ge=100)
    """``cluster-node-timeout`` of the nodes ``up --redis-cluster`` starts: how long a primary
    may be unreachable before its replica is promoted (a failover's pause is about twice
    this)."""
    secure: bool = False
    """``up`` starts Kafka with a SASL listener (PLAIN and SCRAM-SHA-512) and redis-server
    with an ACL user, with passwords generated once into ``<home>/stack/secrets`` (mode
    0600); ``headwater up --secure`` does the same for one run."""


class WorkerSettings(_Section):
    group_id: str = "headwater-worker"
    """Kafka consumer group of the stream workers; one per deployment."""
    batch_max_events: int = Field(default=100_000, ge=1)
    """Most events per micro-batch written to Redis and Delta. Batches reach it only with a
    backlog (otherwise ``batch_max_seconds`` closes them first); larger ones write each entity
    once for more of its events (bench/batch_processor.py: 35k events/s at 5,000, 54k at
    50,000, 73k at 100,000), at about 1.5 s of work per full batch. A worker's memory is
    mostly its state cache: peak RSS 1.0 GB at 50,000 and 1.2 GB at 100,000 in
    bench/stream_throughput.py."""
    batch_max_seconds: float = Field(default=0.05, gt=0)
    """Longest a partial micro-batch waits before it is written: most of an event's way to
    Redis when the worker keeps up (bench/stream_throughput.py, produce -> servable at 2,000
    events/s: p50 105 ms with 0.1, 45 ms with 0.05). A backlog fills batches to
    ``batch_max_events`` before this passes, so it costs no throughput."""
    offline_flush_rows: int = Field(default=100_000, ge=0)
    """Delta commits wait for this many rows (or ``offline_flush_seconds``); Redis is
    written every batch regardless, so serving is not delayed."""
    offline_flush_seconds: float = Field(default=5.0, ge=0)
    """Longest rows wait for their Delta commit."""
    offline_idle_flush_seconds: float = Field(default=1.0, ge=0)
    """When no batch came for this long (a backfill or burst ended, a quiet topic), buffered
    rows are committed now instead of waiting out ``offline_flush_seconds``: the history of
    the last events should not lag Redis by seconds when nothing is left to batch with."""
    session_timeout_seconds: float = Field(default=10.0, ge=6.0)
    """How long before the group moves a silent (crashed) worker's partitions to the others;
    the broker refuses less than 6 s."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Port of the worker's Prometheus endpoint; 0 disables it."""
    on_processing_error: Literal["dead_letter", "stop"] = "dead_letter"
    """What a worker does with an event that fails in a way nobody foresaw (not a bad event,
    which always goes to the DLQ, nor a store outage, which is retried): ``dead_letter``
    isolates it, sends it to ``dlq.<source>`` with reason ``processing_error`` and the
    exception, and carries on; ``stop`` stops that source's processing at it (the process
    stays up, logs CRITICAL and sets ``headwater_source_paused``) for someone to look."""
    reload_check_seconds: float = Field(default=5.0, gt=0)
    """How often a worker checks the catalog for changed definitions (then restarts itself)."""
    native_decoding: bool = True
    """Decode batches of the source's own schema with the native extension (``native/``,
    built by ``make setup``) straight into Arrow columns; without the extension, or with
    ``false``, every event is decoded by fastavro. Both give the same rows; the switch is
    for comparing them."""


class CatalogSettings(_Section):
    url: str | None = None
    """SQLAlchemy URL of the catalog, e.g. ``postgresql+psycopg://user@host/db``;
    unset means a SQLite file at ``<home>/catalog.db``. A password written in it is accepted
    but hidden everywhere it is shown; prefer ``password``."""
    password: SecretStr | None = None
    """Database password, put into ``url`` only when the engine is made; never logged nor
    shown. Pass it in ``HEADWATER_CATALOG__PASSWORD``, never as an argument."""

    @model_validator(mode="after")
    def _check_password(self) -> CatalogSettings:
        """A password needs a server URL to go into, and only one place to come from."""
        if self.password is None:
            return self
        if self.url is None:
            msg = (
                "password set without url: the default SQLite catalog takes no password; "
                "set HEADWATER_CATALOG__URL=postgresql+psycopg://user@host/db"
            )
            raise ValueError(msg)
        if redact_url(self.url) != self.url:
            msg = (
                "a password is set both in url and in password: keep it only in password "
                "(HEADWATER_CATALOG__PASSWORD) and remove it from the URL"
            )
            raise ValueError(msg)
        return self

    def __repr_args__(self) -> Any:
        # The URL may hold a password: show it masked, as every message does.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and value else value


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    push_max_events: int = Field(default=10_000, ge=1)
    """Most events one ``POST /v1/push/{source}`` may carry (413 beyond)."""
    push_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest push request body (413 beyond)."""
    online_cache_entities: int = Field(default=50_000, ge=0)
    """Decoded entity states the API keeps, each checked against Redis on every lookup
    (reused only while unchanged); 0 turns the cache off."""
    definitions_max_age_seconds: float = Field(default=1.0, ge=0.0)
    """How stale the API's view of the catalog may be (an apply or retire shows within it)."""
    historical_max_rows: int = Field(default=10_000, ge=1)
    """Most label rows one ``POST /v1/historical-features`` may carry (413 beyond)."""
    log_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of online responses logged to Delta for ``headwater consistency`` (0: off)."""
    log_flush_seconds: float = Field(default=2.0, gt=0)
    """Logged responses are committed to Delta at least this often."""
    redis_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    """How long the API waits to connect to Redis before a lookup is answered 503 (a Redis
    that is down must not hold requests, or the threads and connections they use)."""
    redis_read_timeout_seconds: float = Field(default=1.0, gt=0)
    """How long the API waits for Redis to answer a command (a stalled or paused Redis
    accepts connections but never answers) before a lookup is answered 503."""
    retry_after_seconds: int = Field(default=1, ge=0)
    """``Retry-After`` of a 503 answered because a store (Redis, Kafka, the catalog) failed."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest body of every POST/PUT other than push (online and historical lookups,
    registry requests); 413 beyond. Push has its own, ``push_max_body_bytes``."""
    online_max_entities: int = Field(default=10_000, ge=1)
    """Most entities one ``POST /v1/online-features`` may ask for (413 beyond)."""
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    """How long the answer of a push with an ``Idempotency-Key`` header is kept in Redis: a
    retry with the same key within it gets that answer again and produces nothing."""


class SecuritySettings(_Section):
    """Who may use the API (DESIGN §8; README "Security")."""

    require_keys: bool | None = None
    """Whether every API request but health checks needs an API key. Unset (the default):
    always when ``serving.host`` is beyond loopback; on loopback once any key exists, so a
    laptop works before the first ``headwater keys create``. ``false`` turns keys off, and is
    refused unless the API listens on loopback only."""
    secret: SecretStr | None = None
    """Server secret that API keys are hashed with (HMAC-SHA256). Unset: a random one kept in
    ``<home>/security/server-secret`` (mode 0600). Every host of one catalog needs the same."""
    api_key: SecretStr | None = None
    """The key this process sends to a Headwater API (``headwater.client``) and acts as on
    the command line (``HEADWATER_SECURITY__API_KEY``)."""
    trusted_hosts: tuple[str, ...] | None = None
    """Host names the API answers to (guards against DNS rebinding); ``*`` allows any.
    Unset: the loopback names when ``serving.host`` is loopback, else any."""
    key_cache_seconds: float = Field(default=5.0, ge=0.0)
    """With a PostgreSQL catalog, how long the API trusts a verified key (and its "are there
    keys?" answer) before asking again: a revoked key stops working within this time. A SQLite
    catalog needs no such delay: the API re-reads as soon as the file changes."""


class Settings(BaseSettings):
    """Everything a Headwater process needs to know; validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="HEADWATER_",
        env_nested_delimiter="__",
        yaml_file="headwater.yaml",
        extra="forbid",
        frozen=True,
    )

    home: Path = Path(".headwater")
    """Directory of all local state: catalog, Delta tables, service data and logs."""
    definitions: Path = Path("features")
    """Default file or directory of feature definitions (``headwater apply`` without PATH)."""
    max_future_skew_ms: int = Field(default=300_000, ge=0)
    """Events dated more than this after their arrival are refused."""
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    stack: StackSettings = StackSettings()
    worker: WorkerSettings = WorkerSettings()
    serving: ServingSettings = ServingSettings()
    catalog: CatalogSettings = CatalogSettings()
    security: SecuritySettings = SecuritySettings()
    offline: OfflineSettings = OfflineSettings()

    @property
    def catalog_url(self) -> str:
        """Where the catalog lives: ``catalog.url`` (with ``catalog.password`` put in) or a
        SQLite file under ``home``. Holds the password: hand it only to SQLAlchemy, and show
        ``redact_url`` of it."""
        if self.catalog.url:
            if self.catalog.password is None:
                return self.catalog.url
            from sqlalchemy.engine import make_url

            url = make_url(self.catalog.url).set(password=self.catalog.password.get_secret_value())
            return url.render_as_string(hide_password=False)
        return f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def offline_root(self) -> Path:
        """The local directory of the default offline store (``offline.url`` unset)."""
        return self.home / "offline"

    @property
    def offline_location(self) -> OfflineLocation:
        """Where every Delta table and training-set input is read and written, with the
        storage options (secrets in plain text: hand them only to deltalake)."""
        url = self.offline.url
        if url is None:
            return OfflineLocation.of(self.offline_root)
        if "://" not in url or url.startswith("file://"):
            return OfflineLocation.of(Path(url.removeprefix("file://")))
        options = {k.upper(): v for k, v in self.offline.storage_options.items()}
        options.update(
            {k.upper(): v.get_secret_value() for k, v in self.offline.secret_options.items()}
        )
        return OfflineLocation(url.rstrip("/"), options)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments beat the environment, which beats headwater.yaml.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, turning pydantic's report into one ``ConfigError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        msg = (
            f"invalid Headwater settings: {problems} "
            "(set them with HEADWATER_<SECTION>__<NAME> variables or in headwater.yaml)"
        )
        # Not chained: pydantic's own report quotes every input, passwords included.
        raise ConfigError(msg) from None

"""Fixture modules shared by the test suite (see tests/README.md)."""

pytest_plugins = [
    "tests.integration.services",
    "tests.integration.pipeline",
    "tests.integration.postgres",
    "tests.integration.avro_forms",
    "tests.integration.kafka_cluster",
    "tests.integration.s3",
    "tests.integration.redis_cluster",
    "tests.integration.browser",
]

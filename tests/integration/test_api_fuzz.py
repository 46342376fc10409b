"""Fuzzing the whole OpenAPI of the API with schemathesis, on the real Kafka and Redis.

Every operation the app declares gets a bounded number of generated requests (valid and
invalid by its schema); none may be answered 5xx, and every answer must match the schema
the operation declares for its status. The app runs in-process (ASGI) over a private
deployment (own topic, feature set and catalog), so whatever it accepts stays its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from headwater.serving.app import create_app
from tests.integration.pipeline import make_deployment

pytestmark = pytest.mark.integration

EXAMPLES = 20
"""Generated requests per operation, valid and invalid each: the run stays well under a minute."""


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> Iterator[schemathesis.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with make_deployment(tmp, kafka_bootstrap, redis_url) as deployment:
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(deployment.settings))


def test_no_5xx_and_every_answer_matches_its_declared_schema(
    api_schema: schemathesis.BaseSchema,
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 15, [op.label for op in operations]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation, mode in [(op, mode) for op in operations for mode in modes]:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without inputs (GET /healthz) has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label

"""Property-based requests from the app's own OpenAPI schema (schemathesis):
valid and invalid inputs on every operation, with an admin key, must never
get a 5xx, and every answer must be what the description says: a documented
status code, the documented media type (``application/problem+json`` for
errors) and a body that validates against the documented schema. Runs against a real uvicorn server, a real Temporal dev server
(no worker: runs just sit) and a fresh SQLite store."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from api.app import create_app
from engine.store import Store
from tests.api.conftest import ADMIN, LiveServer, make_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Bounded so the whole run stays well under two minutes.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
HEADERS = {"Authorization": f"Bearer {ADMIN}"}

SEED = """\
journey "fuzz"
  entry api
  reentry always

  wait 1d
  send webhook "fuzz"
"""


@pytest.fixture(scope="module")
def live(dev_env: Any, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    app_settings = make_settings(
        tmp, "fuzz-no-worker", temporal_address=dev_env.client.service_client.config.target_host, log_level="WARNING"
    )
    store = Store(app_settings.database_url)
    store.migrate()
    with LiveServer(create_app(app_settings, store=store)) as url:
        # something to find: a journey, a template, a pool, a user
        seeds = [
            requests.post(f"{url}/v1/journeys", json={"source": SEED, "id": "fuzz"}, headers=HEADERS, timeout=30),
            requests.put(f"{url}/v1/templates/fuzz", json={"body": "hi {{ user.id }}"}, headers=HEADERS, timeout=30),
            requests.put(f"{url}/v1/pools/fuzz", json={"stock": 5}, headers=HEADERS, timeout=30),
            requests.post(
                f"{url}/v1/identify",
                json={"userId": "fuzz", "traits": {"phone": "13800000000"}},
                headers=HEADERS,
                timeout=30,
            ),
        ]
        assert all(r.status_code < 300 for r in seeds), [r.text for r in seeds if r.status_code >= 300]
        yield url
    store.dispose()


def test_no_server_errors_on_any_operation(live: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json", headers=HEADERS)
    session = requests.Session()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    timings: dict[str, float] = {}
    for operation in operations:
        started = time.perf_counter()
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call(base_url=live, session=session, headers=HEADERS, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )
                case.validate_response(response, checks=CHECKS, headers=HEADERS)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to make invalid (no parameters): the positive run covered it
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                if not failures or operation.label not in failures[-1]:
                    failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:1500]}")
        timings[operation.label] = time.perf_counter() - started
    print("slowest:", sorted(timings.items(), key=lambda kv: -kv[1])[:8])
    assert not failures, "\n".join(failures)

"""Fuzzing the HTTP API from its own /openapi.json (schemathesis): no generated request gets a 5xx, every 4xx is a
JSON error of the documented shape, every answer's status and body are the ones the document gives.

Against `tidings serve` in a real process, on the real PostgreSQL (which refuses what SQLite stores: a NUL in
text), with the credentials each route asks for. Inputs both valid and invalid by the schema, TIDINGS_FUZZ_EXAMPLES
(default 25) per operation and mode: about a minute in all. A failure prints the request to reproduce it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from api_calls import signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from fixtures.db import _pg_url
from support import PUBLISH_KEY, SECRET, ServerProcess, app_of
from tidings import Hub, Settings

EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "25"))
METRICS_TOKEN = "fuzz-metrics-token"
ERROR_FIELDS = {"error", "message", "field"}


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every documented operation and mode, read from the app's document at collection (one test each). An
    operation with neither parameters nor a body has no invalid input to generate."""
    hub = Hub(Settings(_env_file=None, jwt_secret=SECRET, docs_enabled=True))  # type: ignore[call-arg]
    document = app_of(hub).app.openapi()
    cases = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


@pytest.fixture(scope="module")
def fuzz_server(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    postgres_server.require()
    database = postgres_server.create(postgres_server.migrated_template())
    env = {
        "TIDINGS_DATABASE_URL": _pg_url(database),
        "TIDINGS_DOCS_ENABLED": "true",
        "TIDINGS_METRICS_TOKEN": METRICS_TOKEN,
        "TIDINGS_DEVICE_REGISTER_RATE_PER_MINUTE": "0",  # reach the database, not the limiter
        "TIDINGS_LOG_LEVEL": "warning",
    }
    server = ServerProcess(env, tmp_path_factory.mktemp("fuzz")).start()
    try:
        yield server
    finally:
        server.stop()
        postgres_server.drop(database)


@pytest.fixture(scope="module")
def schema(fuzz_server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def credentials() -> dict[str, str]:
    """The bearer each security scheme takes: an admin allowed every topic, the publish key, the metrics token."""
    now = int(time.time())
    claims = {"sub": "fuzz-admin", "roles": ["admin"], "topics": ["*"], "iat": now, "exp": now + 3600}
    return {
        "user": jwt.encode(claims, SECRET, algorithm="HS256"),
        "publisher": PUBLISH_KEY,
        "metrics": METRICS_TOKEN,
    }


def send(case: Any, base_url: str, bearer: str | None) -> requests.Response:
    """The case's request with a valid credential where the generated one stands (schemathesis leaves it out to
    check that the route then refuses); a stream that answers 200 is closed at once (its body never ends)."""
    asks_auth = any(name.lower() == "authorization" for name in case.headers or {})
    headers = {"Authorization": f"Bearer {bearer}"} if bearer and asks_auth else None
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    response = requests.request(**kwargs, stream=True, timeout=15)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        response.close()
    else:
        _ = response.content
    return response


def check_answer(case: Any, response: requests.Response) -> None:
    where = f"{case.method} {response.request.url} -> {response.status_code}: {response.text[:500]!r}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), where
        body = response.json()
        assert isinstance(body, dict) and body.keys() >= ERROR_FIELDS, where
        assert isinstance(body["error"], str) and isinstance(body["message"], str), where
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        # the status is documented and the body has the documented shape. Not checked, as they misfire here:
        # that data valid by the schema is accepted (an empty audience is valid JSON Schema, and a 422); that a
        # generated credential is refused (`send` put a valid one in its place); that data invalid by the schema
        # is refused (a query parameter "mutated" into [] or {} is not sent at all, and a credential mutated into
        # garbage was replaced by `send`, so the request that reaches the server is valid).
        excluded = [positive_data_acceptance, ignored_auth, negative_data_rejection]
        case.validate_response(response, excluded_checks=excluded)


@pytest.mark.postgres
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("method", "path", "mode"), _cases(), ids=lambda v: getattr(v, "value", v))
def test_no_request_gets_a_server_error(
    schema: Any, fuzz_server: ServerProcess, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    bearers = credentials()
    scheme = next(iter((operation.definition.raw.get("security") or [{}])[0]), None)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        check_answer(case, send(case, fuzz_server.url, bearers.get(scheme) if scheme else None))

    fuzz()


def test_the_fuzzer_reads_every_operation() -> None:
    """The fuzz covers what the document declares; at least the routes we know of."""
    covered = {(method, path) for method, path, _ in _cases()}
    assert {("POST", "/v1/publish"), ("GET", "/v1/events"), ("GET", "/v1/admin/deliveries")} <= covered


# --- tokens: validly signed, with whatever claims ----------------------------------------------------------------

_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=int(time.time()) - 100, max_value=int(time.time()) + 10**6),
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_claims = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.one_of(st.text(max_size=300), _json),
        "exp": st.one_of(_numbers, _json),
        "iat": st.one_of(_numbers, _json),
        "nbf": st.one_of(_numbers, _json),
        "jti": st.one_of(st.text(max_size=50), _json),
        "roles": st.one_of(st.lists(st.text(max_size=20), max_size=4), st.text(max_size=40), _json),
        "topics": st.one_of(st.lists(st.text(max_size=20), max_size=4), st.text(max_size=40), _json),
    },
)
_TOKEN_ROUTES = [("GET", "/v1/devices"), ("GET", "/v1/admin/deliveries"), ("GET", "/v1/events"),
                 ("POST", "/v1/publish")]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_no_signed_token_gets_a_server_error(fuzz_server: ServerProcess) -> None:
    """A token with a valid signature and any claims at all (huge, negative, NaN, of the wrong type, with control
    characters) is answered 2xx/4xx, never 5xx, on the user, admin, stream and publisher routes."""

    @settings(
        max_examples=EXAMPLES * 4, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(claims=_claims)
    def fuzz(claims: dict[str, Any]) -> None:
        token = signed(claims)
        for method, path in _TOKEN_ROUTES:
            body = {"type": "fuzz.token", "to": {"users": ["x"]}} if method == "POST" else None
            response = requests.request(
                method,
                f"{fuzz_server.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                stream=True,
                timeout=15,
            )
            streaming = response.headers.get("content-type", "").startswith("text/event-stream")
            if streaming:
                response.close()
                continue
            where = f"{method} {path} {claims!r} -> {response.status_code}: {response.text[:300]!r}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert response.json().keys() >= ERROR_FIELDS, where

    fuzz()

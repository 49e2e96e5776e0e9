"""Fuzz every operation of the OpenAPI document with schemathesis, in process.

Generated requests, valid and invalid, go to the zone's ASGI app with an admin
token. Whatever they carry, the zone must never answer 5xx, and every 4xx must
carry the one error shape `{"error": {"code": ..., "message": ...}}`.

The app's lifespan runs on schemathesis's own event-loop thread (entered through
its ASGI client), so the database and every request share one loop. Child zone
URLs may only point at 127.0.0.1 (where they fail fast): the fuzzer never
reaches past loopback.

schemathesis's pytest plugin (`from_fixture(...).parametrize()`) does not run on
pytest 9, so each operation gets a plain Hypothesis test over its strategy, and
the failures of all operations are reported together. The cases are the same on
every run (derandomized); raise SKYFED_FUZZ_EXAMPLES to dig deeper.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from tests.conftest import ADMIN_PASSWORD, InProcessZone, zone_settings

MAX_EXAMPLES = int(os.environ.get("SKYFED_FUZZ_EXAMPLES", "40"))
ERROR_KEYS = {"code", "message", "details"}

Login = Callable[[], str]


def error_shape_problem(status: int, body: bytes) -> str | None:
    """Why a 4xx answer is not `{"error": {"code": str, "message": str[, "details"]}}`."""
    if not 400 <= status < 500:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return f"{status} without a JSON body: {body[:200]!r}"
    if not isinstance(data, dict) or set(data) != {"error"}:
        return f"{status} is not the error shape: {data!r}"
    error = data["error"]
    if not isinstance(error, dict) or not set(error) <= ERROR_KEYS:
        return f"{status} has a malformed error object: {data!r}"
    for key in ("code", "message"):
        if not isinstance(error.get(key), str) or not error[key]:
            return f"{status} has no error.{key}: {data!r}"
    return None


def one_error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A schemathesis check: every 4xx answer has the one error shape."""
    problem = error_shape_problem(response.status_code, response.content)
    assert problem is None, problem


DATABASES = ("sqlite", "postgres")


def _fuzz_zone(database_url: str | None, state_dir: Any) -> tuple[Any, Login]:
    """A zone with a little data to find, served in process: (app, admin login)."""
    settings_ = zone_settings(
        state_dir,
        database_url,
        allowed_child_hosts=["127.0.0.1"],
        poll_timeout=1.0,
        agent_poll_max=0.05,  # agents' long polls answer at once here
        # Fuzzed logins fail by the thousand; the bound on them is tested elsewhere.
        login_max_failures_per_user=1_000_000,
        login_max_failures_per_source=1_000_000,
    )
    app = InProcessZone(settings_).app

    def login() -> str:
        """A fresh admin token (a fuzzed logout revokes only its own)."""
        with asgi.ASGIClient(app) as http:
            response = http.post(
                "/v1/auth/tokens", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    with asgi.ASGIClient(app) as http:  # starts the lifespan on schemathesis's loop
        auth = {"Authorization": f"Bearer {login()}"}
        seed = [
            ("PUT", "/v1/hosts/h1", {"capabilities": {"arch": "x86_64"}}),
            ("POST", "/v1/projects", {"name": "acme"}),
            (
                "POST",
                "/v1/users",
                {"name": "alice", "password": "alice-pw-1", "project": "acme"},
            ),
        ]
        for method, path, body in seed:
            response = http.request(method, path, json=body, headers=auth)
            assert response.status_code < 300, response.text
    return app, login


@pytest.fixture(scope="module")
def fuzz_zones(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Any, Login]]]:
    """The zone on SQLite and on PostgreSQL (which refuses values SQLite stores: NUL in a
    string, say), by database: every generated case goes to both."""
    try:
        yield {
            "sqlite": _fuzz_zone(None, tmp_path_factory.mktemp("fuzz")),
            "postgres": _fuzz_zone(
                request.getfixturevalue("module_postgres_database"),
                tmp_path_factory.mktemp("fuzz"),
            ),
        }
    finally:
        asgi.shutdown_lifespans()


@pytest.fixture(params=DATABASES)
def fuzz_zone(
    request: pytest.FixtureRequest, fuzz_zones: dict[str, tuple[Any, Login]]
) -> tuple[Any, Login]:
    return fuzz_zones[request.param]


@pytest.fixture(scope="module")
def api_schema(fuzz_zones: dict[str, tuple[Any, Login]]) -> Any:
    app, _ = fuzz_zones["sqlite"]  # the same document on both
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    zones: dict[str, tuple[Any, str]],
    statuses: dict[str, Counter[int]],
) -> None:
    """Each case generated once, sent to every zone (app, token), whose answers are
    checked and counted on their own."""

    def recorder(database: str) -> Any:
        def record(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
            statuses[database][response.status_code] += 1

        return record

    records = {database: recorder(database) for database in zones}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        for database, (app, token) in zones.items():
            case.call_and_validate(
                app=app,
                headers={"Authorization": f"Bearer {token}"},
                checks=[records[database], not_a_server_error, one_error_shape],
            )

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_one_error_shape(
    api_schema: Any, fuzz_zones: dict[str, tuple[Any, Login]], mode: GenerationMode
) -> None:
    """On SQLite and on PostgreSQL: each case is made once and sent to both (Hypothesis
    making the cases costs more than the zones answering them)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    fuzzed: list[str] = []
    statuses: dict[str, Counter[int]] = {database: Counter() for database in DATABASES}
    for operation in operations:
        zones = {database: (app, login()) for database, (app, login) in fuzz_zones.items()}
        try:
            _fuzz(operation, mode, zones, statuses)
        except Unsatisfiable:
            # Nothing to make invalid in an operation without parameters or body.
            if mode is GenerationMode.POSITIVE:
                failures.append(f"--- {operation.label}: no cases could be generated")
        except Exception as exc:  # report every operation's failure, with its example
            notes = "\n".join(getattr(exc, "__notes__", []))
            failures.append(f"--- {operation.label}: {type(exc).__name__}: {exc}\n{notes}")
        else:
            fuzzed.append(operation.label)
    assert not failures, "\n".join(failures)
    # The cases reached the routes rather than all being turned away at the door.
    assert len(fuzzed) >= 15, fuzzed
    for database, seen in statuses.items():
        total = sum(seen.values())
        assert total >= len(fuzzed) * 5, (database, seen)
        if mode is GenerationMode.POSITIVE:
            assert seen[401] + seen[403] < total / 4, (database, seen)
            assert sum(n for status, n in seen.items() if status < 300) > total / 4, (
                database,
                seen,
            )
        else:  # negative cases also drop the token on purpose: 401s are expected here
            assert seen[400] + seen[422] > total / 4, (database, seen)


# URLs the fuzzer found: they pass the api_url pattern but urllib or httpx cannot
# read them, and they used to end in a 500 (ValueError, httpx.InvalidURL).
MALFORMED_CHILD_URLS = [
    "http://[",
    "http://a]",
    "http://[::1:1",
    "http://[zz]:1",
    "http://\u2100:1",
    "http://127.0.0.1:abc",
    "http://127.0.0.1:1:2",
    "http://127.0.0.1:1\x00",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:-1",
    "http://:80",
    "http://@",
]


@pytest.mark.parametrize("url", MALFORMED_CHILD_URLS)
def test_malformed_child_urls_are_422(fuzz_zone: tuple[Any, Login], url: str) -> None:
    app, login = fuzz_zone
    auth = {"Authorization": f"Bearer {login()}"}
    create = {"name": "bad", "api_url": url, "username": "svc", "password": "pw"}
    with asgi.ASGIClient(app) as http:
        answers = [
            http.post("/v1/zones", json=create, headers=auth),
            http.put("/v1/zones/bad", json={"api_url": url}, headers=auth),
        ]
        zones = http.get("/v1/zones", headers=auth).json()["zones"]
    for response in answers:
        assert response.status_code == 422, response.text
        assert error_shape_problem(response.status_code, response.content) is None
        assert response.json()["error"]["code"] == "validation_error"
    assert zones == []


@pytest.mark.parametrize(
    ("status", "body", "fine"),
    [
        (404, b'{"error": {"code": "not_found", "message": "no such zone"}}', True),
        (422, b'{"error": {"code": "validation_error", "message": "x", "details": []}}', True),
        (200, b"[]", True),
        (404, b'{"detail": "Not Found"}', False),
        (400, b"not json", False),
        (401, b'{"error": {"code": "", "message": "m"}}', False),
        (403, b'{"error": {"code": "forbidden"}}', False),
        (409, b'{"error": {"code": "c", "message": "m", "extra": 1}}', False),
        (400, b'{"error": "bad", "code": "x"}', False),
    ],
)
def test_the_error_shape_check(status: int, body: bytes, fine: bool) -> None:
    assert (error_shape_problem(status, body) is None) is fine

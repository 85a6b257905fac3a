"""Generated requests for every operation of /openapi.json (schemathesis), as
a signed-in administrator: no answer may be a 5xx or differ from what the
schema documents (status, content type, body; issue 15, "Fuzzing").

Not checked: that every schema-valid request is accepted. Some are refused
by rules a JSON schema does not carry (a gc grace under 10 minutes without
``force``, an export link over the installation's lifetime limit), with a
422 problem document the schema does list."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.conftest import make_dataset

EXAMPLES = 15
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def test_every_operation_answers_within_its_schema(
    app: Any, client: Any, admin: dict[str, str]
) -> None:
    make_dataset(client, admin, visibility="public")  # something to find
    headers = {"Authorization": admin["Authorization"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations, calls = 0, [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            calls[0] += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - gather every operation's failure (groups too)
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:800]}")
    assert operations > 40 and calls[0] > 5 * operations
    assert not failures, "\n\n".join(failures)

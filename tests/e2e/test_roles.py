"""Users and operators are separate roles on every route the spec lists, both ways.

The list comes from the OpenAPI spec, so a new route cannot be left out.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.e2e.conftest import bearer, json_of

OPERATOR_PREFIX = "/api/v1/admin/"
# The same id for the caller and for any id in a path: the answer must come
# from the role, not from whether the user or the transfer exists.
CALLER = 3001


def _operations(client: FlaskClient) -> list[tuple[str, str, bool]]:
    spec: dict[str, Any] = json_of(client.get("/openapi.json"))
    found = []
    for path, item in spec["paths"].items():
        values = {
            parameter["name"]: parameter.get("schema", {}).get("enum", [CALLER])[0]
            for parameter in item.get("parameters", [])
            if parameter["in"] == "path"
        }
        url = path
        for name, value in values.items():
            url = url.replace(f"{{{name}}}", str(value))
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            if operation.get("security") == []:
                continue  # public: no token at all
            found.append((method.upper(), url, path.startswith(OPERATOR_PREFIX)))
    return found


def test_the_spec_lists_both_kinds_of_route(client: FlaskClient) -> None:
    operations = _operations(client)
    assert any(operator for _, _, operator in operations)
    assert sum(1 for _, _, operator in operations if not operator) >= 5


def test_an_operator_token_is_refused_on_every_user_route_and_a_user_token_on_every_operator_route(
    client: FlaskClient,
) -> None:
    wrong_role = []
    for method, url, operator_route in _operations(client):
        token = bearer(CALLER, operator=not operator_route)
        answer = client.open(url, method=method, json={}, headers=token)
        if answer.status_code != 403 or json_of(answer)["error"]["code"] != "PERMISSION_DENIED":
            wrong_role.append((method, url, answer.status_code))
    assert wrong_role == []


def test_the_right_role_gets_past_the_guard_on_every_route(client: FlaskClient) -> None:
    for method, url, operator_route in _operations(client):
        answer = client.open(url, method=method, json={}, headers=bearer(CALLER, operator=operator_route))
        assert answer.status_code not in (401, 403), (method, url, answer.status_code)

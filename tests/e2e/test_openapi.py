"""The served OpenAPI spec tells the truth about what the service answers."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from app.api.errors import all_codes
from tests.e2e.conftest import json_of

BODY_METHODS = {"post", "put", "patch"}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method != "parameters"
    ]


def test_every_error_response_is_the_real_error_shape(client: FlaskClient) -> None:
    spec = json_of(client.get("/openapi.json"))
    error = spec["components"]["schemas"]["ApiError"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ApiErrorBody"
    assert set(spec["components"]["schemas"]["ApiErrorBody"]["properties"]) == {"code", "message", "details"}
    default = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert default["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ApiError"
    for path, method, op in operations(spec):
        assert "422" not in op["responses"] or path.endswith(("internal_transfer", "internal_transfer/batch")), (
            path,
            method,
        )
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ApiError"
                for code in response["description"].split(", "):
                    assert all_codes()[code] == int(status), (path, method, status, code)


def test_every_operation_has_a_summary_and_the_errors_it_can_answer(client: FlaskClient) -> None:
    spec = json_of(client.get("/openapi.json"))
    assert len(operations(spec)) >= 10
    for path, method, op in operations(spec):
        assert op.get("summary"), (path, method)
        statuses = set(op["responses"])
        public = op.get("security") == []
        if not public:
            assert {"401", "503"} <= statuses, (path, method)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
            assert "Retry-After" in op["responses"]["503"]["headers"]
        if path.startswith("/api/v1/admin/"):
            assert "403" in statuses, (path, method)
        if method in BODY_METHODS:
            assert {"400", "413", "415"} <= statuses, (path, method)
        if "{request_id}" in path:
            assert "404" in statuses, (path, method)
        if op.get("parameters"):
            assert "400" in statuses or all(p["in"] in ("header", "path") for p in op["parameters"]), (path, method)


def test_the_specific_truths(client: FlaskClient) -> None:
    spec = json_of(client.get("/openapi.json"))
    paths = spec["paths"]
    assert paths["/api/v1/assets"]["get"]["security"] == []
    post = paths["/api/v1/user/internal_transfer"]["post"]
    assert "Location" in post["responses"]["202"]["headers"]
    assert {"409", "422"} <= set(post["responses"])
    assert "IDEMPOTENCY_KEY_REUSED" in post["responses"]["409"]["description"]
    key = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"
    deposit = paths["/api/v1/admin/deposits"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in deposit["parameters"])
    act = paths["/api/v1/admin/transfers/{request_id}/{action}"]["post"]
    assert "TRANSFER_NOT_PENDING" in act["responses"]["409"]["description"]

    account = spec["components"]["schemas"]["AccountRef"]["properties"]
    assert account["asset"]["enum"] == ["BTC", "ETH", "USDT"]


def test_a_transfer_request_is_one_asset_from_one_account_type_to_the_other(client: FlaskClient) -> None:
    variants = json_of(client.get("/openapi.json"))["components"]["schemas"]["TransferRequest"]["oneOf"]
    pairs = set()
    for variant in variants:
        assert variant["additionalProperties"] is False
        assert set(variant["required"]) == {"from_account", "to_account", "amount"}
        source, target = (variant["properties"][side]["properties"] for side in ("from_account", "to_account"))
        assert source["asset"]["enum"] == target["asset"]["enum"]  # no variant holds an ASSET_MISMATCH
        pairs.add((source["account_type"]["enum"][0], target["account_type"]["enum"][0], source["asset"]["enum"][0]))
        pattern = re.compile(variant["properties"]["amount"]["pattern"])
        for refused in ("0", "0.0", "00", "01", "-1", "1e3", " 1", "1.", "1.000000001", "100000001"):
            assert not pattern.search(refused), refused
        for accepted in ("1", "0.5", "100.00000000", "0.00000001", "10"):
            assert pattern.search(accepted), accepted
    # SAME_ACCOUNT is not expressible: exactly the two directions, for every asset.
    assert pairs == {
        (a, b, asset) for a, b in (("funding", "spot"), ("spot", "funding")) for asset in ("BTC", "ETH", "USDT")
    }
    btc = next(v for v in variants if v["title"] == "BTC, funding to spot")
    assert re.search(btc["properties"]["amount"]["pattern"], "10000")
    assert not re.search(btc["properties"]["amount"]["pattern"], "10000.00000001")  # BTC's maximum


def test_the_other_request_rules_are_in_the_spec(client: FlaskClient) -> None:
    schemas = json_of(client.get("/openapi.json"))["components"]["schemas"]
    deposits = {v["properties"]["asset"]["enum"][0]: v for v in schemas["DepositRequest"]["oneOf"]}
    assert set(deposits) == {"BTC", "ETH", "USDT"}
    assert not re.search(deposits["BTC"]["properties"]["amount"]["pattern"], "0.000000001")
    limit = re.compile(schemas["LimitOverrideRequest"]["properties"]["limit"]["pattern"])
    assert limit.search("0") and limit.search("0.000") and limit.search("1000.5")
    assert not limit.search("") and not limit.search("1.000000001")
    for name in ("DepositRequest", "OperatorAction", "LimitOverrideRequest"):
        schema = schemas[name]["oneOf"][0] if "oneOf" in schemas[name] else schemas[name]
        reason = re.compile(schema["properties"]["reason"]["pattern"])
        assert reason.search(" why ") and not reason.search(" \t\u3000"), name
    history = json_of(client.get("/openapi.json"))["paths"]["/api/v1/user/internal_transfer/history"]["get"]
    cursor = next(p for p in history["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["minLength"] == 1


def test_the_batch_routes_are_in_the_spec(client: FlaskClient) -> None:
    spec = json_of(client.get("/openapi.json"))
    post = spec["paths"]["/api/v1/user/internal_transfer/batch"]["post"]
    assert {"202", "400", "401", "403", "409", "422", "429", "503"} <= set(post["responses"])
    assert "DAILY_LIMIT_EXCEEDED" in post["responses"]["422"]["description"]
    assert any(p["name"] == "Idempotency-Key" for p in post.get("parameters", []))
    request = spec["components"]["schemas"]["BatchRequest"]
    assert request["properties"]["legs"]["minItems"] == 2
    assert request["properties"]["legs"]["maxItems"] == 50
    get = spec["paths"]["/api/v1/user/internal_transfer/batch/{batch_id}"]["get"]
    assert {"200", "401", "404"} <= set(get["responses"])
    assert spec["components"]["schemas"]["Batch"]["properties"]["legs"]["items"]["$ref"].endswith("/Transfer")


def test_the_docs_pages_load_every_file_from_this_service(client: FlaskClient) -> None:
    # What test_docs_browser.py proves in a browser, in milliseconds: each page's scripts and
    # styles are served here, from the pinned packages (app/api/docs_assets.py), not from a CDN.
    for page, expected in (("/docs", 3), ("/redoc", 1)):
        html = client.get(page).get_data(as_text=True)
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(urls) == expected, (page, urls)
        for url in urls:
            assert url.startswith("/docs-assets/"), (page, url)
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.get_data()) > 100_000, url  # the real bundle, not a stub
            assert asset.mimetype in ("text/javascript", "application/javascript", "text/css"), (url, asset.mimetype)
    missing = client.get("/docs-assets/swagger-ui/../../app/config.py")
    assert missing.status_code == 404
    assert json_of(missing)["error"]["code"] == "NOT_FOUND"

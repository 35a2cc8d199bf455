"""HTTP conformance details a client or a scanner relies on."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/incidents", {"GET", "POST"}),
        ("PUT", "/api/v1/incidents/INC-20260101-001", {"GET", "PATCH"}),
        ("GET", "/webhooks/pagerduty", {"POST"}),
    ],
)
def test_405_names_every_allowed_method(api: TestClient, method: str, path: str, allowed: set[str]) -> None:
    response = api.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    "target",
    [
        "/admin/..//evil.example",
        "//evil.example",
        "/admin/../../evil",
        "https://evil.example/admin",
        "/\\evil",
    ],
)
def test_login_never_sends_a_browser_outside_the_admin_ui(client: TestClient, target: str) -> None:
    form = client.get("/admin/login", params={"next": target})
    assert f'value="{target}"' not in form.text
    assert 'name="next" value="/admin/' in form.text


def test_login_keeps_a_next_page_inside_the_admin_ui(client: TestClient) -> None:
    form = client.get("/admin/login", params={"next": "/admin/deliveries?state=dead"})
    assert 'name="next" value="/admin/deliveries?state=dead"' in form.text


def test_the_openapi_document_declares_every_error_answer_as_problem_json(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    errors = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            for code, answer in answers.items():
                if int(code) >= 400:
                    errors += 1
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, code)
            assert {"422", "503"} <= set(answers), (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= set(answers), (method, path)
    patch = document["paths"]["/api/v1/incidents/{incident_id}"]["patch"]["responses"]
    assert {"404", "409", "412"} <= set(patch)
    assert {"400", "401", "404"} <= set(document["paths"]["/webhooks/{connector_id}"]["post"]["responses"])
    assert errors > 100


@pytest.mark.parametrize("tag", ["null", '"abc"', 'W/"x"', "0x10"])
def test_an_if_match_that_names_no_version_fails_the_precondition(api: TestClient, tag: str) -> None:
    incident = api.post("/api/v1/incidents", json={"title": "precondition"}).json()
    answer = api.patch(
        f"/api/v1/incidents/{incident['id']}", json={"assignee": "ana"}, headers={"If-Match": tag}
    )
    assert answer.status_code == 412, answer.text
    assert api.get(f"/api/v1/incidents/{incident['id']}").json()["assignee"] is None


def test_a_number_is_neither_a_time_nor_a_flag(api: TestClient) -> None:
    refused = api.post("/api/v1/incidents", json={"title": "epoch", "detected_at": 0})
    assert refused.status_code == 422 and "RFC 3339" in refused.json()["detail"]
    incident = api.post("/api/v1/incidents", json={"title": "flags"}).json()
    path = f"/api/v1/incidents/{incident['id']}"
    assert api.post(f"{path}/timeline", json={"message": "m", "is_public": 0}).status_code == 422
    assert api.put(f"{path}/status", json={"status": "ACKNOWLEDGED", "reopen": 0}).status_code == 422
    accepted = api.post(f"{path}/timeline", json={"message": "m", "is_public": True})
    assert accepted.status_code == 201, accepted.text


def test_what_the_schema_allows_is_answered_and_what_it_refuses_is_refused(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    patch = schemas["IncidentPatch"]["properties"]
    # Fields a patch cannot clear say so in the schema (no null); the others take null.
    for field in ("title", "severity", "tags", "affected_services", "service_impacts"):
        assert "null" not in str(patch[field]), field
        incident = api.post("/api/v1/incidents", json={"title": f"clear {field}"}).json()
        assert api.patch(f"/api/v1/incidents/{incident['id']}", json={field: None}).status_code == 422
    incident = api.post("/api/v1/incidents", json={"title": "clear description"}).json()
    assert api.patch(f"/api/v1/incidents/{incident['id']}", json={"description": None}).status_code == 200
    # A mapping check needs exactly one document, a preview exactly one sample: the schema says both.
    assert schemas["MappingChange"]["oneOf"] == [{"required": ["yaml"]}, {"required": ["document"]}]
    assert schemas["PreviewRequest"]["oneOf"] == [{"required": ["webhook"]}, {"required": ["incident"]}]

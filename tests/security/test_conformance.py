"""HTTP conformance details a client or a scanner relies on."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import text

from incident_hub.hub import Hub
from tests.support import put_webhook_connector


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


def test_a_boolean_is_not_a_number(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    incident = api.post("/api/v1/incidents", json={"title": "numbers"}).json()
    path = f"/api/v1/incidents/{incident['id']}"
    for minutes in (False, True, "12"):
        refused = api.patch(path, json={"summary": {"time_taken_minutes": minutes}})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "time_taken_minutes" in refused.json()["detail"]
    assert api.patch(path, json={"summary": {"time_taken_minutes": 18}}).json()["summary"] == {
        "impact": None,
        "affected_services": [],
        "root_cause": None,
        "resolution_steps": [],
        "time_taken_minutes": 18.0,
    }
    monkeypatch.setenv("TEST_OPSGENIE_TOKEN", "token")
    config = {
        "id": "opsgenie",
        "kind": "opsgenie",
        "base_url": "https://opsgenie.invalid",
        "credentials": {"env": "TEST_OPSGENIE_TOKEN"},
    }
    for field, value in [
        ("max_concurrency", True),
        ("rate_limit_per_second", True),
        ("timeout_seconds", False),
        ("in_doubt_schedule_seconds", [True]),
        ("enabled", 1),
        ("cancel_duplicates", "yes"),
    ]:
        refused = api.put("/api/v1/connectors/opsgenie", json={**config, field: value})
        assert refused.status_code == 422, (field, refused.text)
        assert field in refused.json()["detail"]
    assert api.get("/api/v1/connectors/opsgenie").status_code == 404
    accepted = api.put("/api/v1/connectors/opsgenie", json={**config, "max_concurrency": 2, "enabled": False})
    assert accepted.status_code == 200, accepted.text


def test_a_signal_time_is_not_a_number(api: TestClient) -> None:
    signal = {"host": "db-2", "device": "nvme0", "component": "replication", "status": "stuck"}
    refused = api.post("/api/v1/signals", json={**signal, "observed_at": 0})
    assert refused.status_code == 422 and "RFC 3339" in refused.json()["detail"]
    assert api.get("/api/v1/incidents").json()["items"] == []
    opened = api.post("/api/v1/signals", json={**signal, "observed_at": "2026-12-07T10:00:00Z"})
    assert opened.status_code == 201, opened.text


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/api/v1/incidents", {"title": "nul\u0000title"}, "body.title"),
        ("POST", "/api/v1/incidents", {"title": "t", "tags": ["a", "b\u0000"]}, "body.tags.1"),
        ("POST", "/api/v1/subscriptions", {"url": "https://a.b", "secret": "s\u0000cret!"}, "body.secret"),
        ("GET", "/api/v1/incidents?assigned_team=%00", None, "query parameter 'assigned_team'"),
        ("GET", "/api/v1/deliveries?target_kind=a%00", None, "query parameter 'target_kind'"),
        ("GET", "/api/v1/incidents/INC-1%00", None, "path"),
        ("POST", "/webhooks/a%00b", {}, "path"),
    ],
)
def test_text_with_a_nul_character_is_refused_on_both_databases(
    api: TestClient, method: str, path: str, body: object, where: str
) -> None:
    """PostgreSQL cannot store U+0000 (it answered 500); SQLite stored it. Both now refuse it up front."""
    answer = api.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"].startswith(where) and "NUL" in answer.json()["detail"]
    assert api.get("/api/v1/incidents").json()["items"] == []


def test_a_form_field_with_a_nul_character_is_refused(client: TestClient) -> None:
    answer = client.post("/admin/login", data={"api_key": "ih_\x00key"}, follow_redirects=False)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("body.api_key") and "NUL" in answer.json()["detail"]
    refused = client.post("/admin/login", data={"api_key": "ih_unknown"}, follow_redirects=False)
    assert refused.status_code != 422  # an ordinary refusal, from the login itself


def test_a_mapping_document_with_a_nul_byte_is_refused(api: TestClient) -> None:
    answer = api.put(
        "/api/v1/mappings/none",
        content=b"severity:\n  x\x00: SEV1_CRITICAL\n",
        headers={"content-type": "application/yaml"},
    )
    assert answer.status_code == 422 and "NUL" in answer.json()["detail"], answer.text


def test_a_subscription_url_longer_than_its_column_is_refused(api: TestClient) -> None:
    host = ".".join(["a" * 63] * 32)  # 2047 characters: a valid host name, past the stored 2000
    answer = api.post("/api/v1/subscriptions", json={"url": f"https://{host}", "secret": "s3cr3t-value"})
    assert answer.status_code == 422, answer.text
    assert "url" in answer.json()["detail"]
    assert api.get("/api/v1/subscriptions").json() == []


def test_what_a_route_answers_the_schema_declares(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    unknown = api.post("/api/v1/reconciliations", json={"connector_id": "nowhere"})
    assert unknown.status_code == 404
    declared = paths["/api/v1/reconciliations"]["post"]["responses"]["404"]
    assert list(declared["content"]) == ["application/problem+json"]
    # A new mapping version needs a body; without one the answer is a 400, as the schema says.
    assert paths["/api/v1/mappings/{connector_id}"]["put"]["requestBody"]["required"] is True
    assert api.put("/api/v1/mappings/pagerduty").status_code == 400


def test_not_ready_is_a_problem_naming_the_failing_check(client: TestClient, hub: Hub) -> None:
    assert client.get("/readyz").json()["checks"] == {"database": "ok", "migrations": "ok"}
    with hub.db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["detail"] == "migrations: behind"
    assert ready.json()["checks"] == {"database": "ok", "migrations": "behind"}


def test_the_links_of_a_created_incident_lead_to_it(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    operations = {
        operation["operationId"]: (path, method)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    links = document["paths"]["/api/v1/incidents"]["post"]["responses"]["201"]["links"]
    created = api.post("/api/v1/incidents", json={"title": "linked"}).json()
    followed = set()
    for link in links.values():
        path, method = operations[link["operationId"]]
        assert link["parameters"] == {"incident_id": "$response.body#/id"}
        if method == "get":
            answer = api.get(path.replace("{incident_id}", created["id"]))
            assert answer.status_code == 200, (path, answer.text)
        followed.add((method, path))
    assert ("patch", "/api/v1/incidents/{incident_id}") in followed
    assert len(followed) >= 10


def test_a_mapping_flag_is_a_boolean(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    put_webhook_connector(api, monkeypatch, "opsgenie", "secret")
    document = yaml.safe_load(api.get("/api/v1/mappings/opsgenie").json()["yaml"])
    for flag in (1, "yes", "true"):
        notes = {**(document.get("notes") or {}), "inbound": flag}
        refused = api.put("/api/v1/mappings/opsgenie", json={"document": {**document, "notes": notes}})
        assert refused.status_code == 422, (flag, refused.text)
        assert "notes.inbound" in refused.json()["detail"], refused.text
    notes = {**(document.get("notes") or {}), "inbound": False}
    saved = api.put("/api/v1/mappings/opsgenie", json={"document": {**document, "notes": notes}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["document"]["notes"]["inbound"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/analytics/reliability?to=0.5",
        "/api/v1/analytics/trends?from=1700000000",
        "/api/v1/incidents?resolved_to=0.5",
        "/api/v1/incidents?created_from=1700000000",
    ],
)
def test_a_number_is_refused_as_a_time_in_a_query(api: TestClient, path: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 422, answer.text
    assert "not a number" in answer.json()["detail"]

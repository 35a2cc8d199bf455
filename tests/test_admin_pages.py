"""The admin UI without a browser: login and sessions, CSRF, the pages and what their forms do."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incident_hub.admin.render import safe_url
from incident_hub.api.auth import Scope
from incident_hub.commands import IncidentDraft, SubscriptionDraft
from incident_hub.connectors.base import ConnectorConfig
from incident_hub.hub import Hub
from incident_hub.model import Severity
from incident_hub.serving import free_port
from incident_hub.store.tables import AdminSessionRow
from tests.admin_support import csrf_token, log_in
from tests.support import Answer, Receiver, wait_until

PAGES = [
    "/admin/overview",
    "/admin/overview?days=30",
    "/admin/connectors",
    "/admin/connectors/opsgenie/mapping",
    "/admin/connectors/opsgenie/mapping/versions",
    "/admin/deliveries",
    "/admin/deliveries?state=pending",
    "/admin/incidents",
]


@pytest.fixture
def hub_with_connector(hub: Hub, client: TestClient) -> Hub:
    """The running hub with one connector whose vendor is unreachable."""
    hub.connectors.upsert(
        ConnectorConfig(id="opsgenie", kind="opsgenie", base_url=f"https://127.0.0.1:{free_port()}")
    )
    return hub


def _incident(hub: Hub, title: str = "Checkout 5xx", **fields: object) -> str:
    draft = IncidentDraft.model_validate({"title": title, **fields})
    return str(hub.incidents.create(draft).incident.id)


def _dead_subscriber_delivery(hub: Hub, receiver: Receiver) -> int:
    """A delivery the subscriber refused with a 400: dead at once (a 4xx does not change by retrying)."""
    receiver.default = Answer(400)
    hub.subscriptions.create(
        SubscriptionDraft.model_validate({"url": receiver.url, "event_types": ["*"], "secret": "s" * 16})
    )
    _incident(hub, "Payments down")
    dead = wait_until(lambda: hub.outbox.search(state="dead", target_kind="subscriber"))
    return int(dead[0].id)


# ---- login and sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_the_login_form_without_a_session(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/login?next=/admin/")


def test_an_htmx_request_without_a_session_sends_the_window_to_the_login_form(client: TestClient) -> None:
    answer = client.get("/admin/connectors/x/health", headers={"HX-Request": "true"}, follow_redirects=False)
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"].startswith("/admin/login")


def test_an_admin_key_logs_in_and_the_pages_render(hub_with_connector: Hub, client: TestClient) -> None:
    hub = hub_with_connector
    log_in(client, hub)
    _incident(hub)
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "Log out" in page.text


@pytest.mark.parametrize("scope", [Scope.READ, Scope.WRITE])
def test_a_key_without_the_admin_scope_is_refused(client: TestClient, hub: Hub, scope: Scope) -> None:
    key = hub.api_keys.create("reader", [scope]).key
    form = client.get("/admin/login")
    answer = client.post("/admin/login", data={"api_key": key, "csrf_token": csrf_token(form.text)})
    assert answer.status_code == 403
    assert "lacks the admin scope" in answer.text
    assert client.get("/admin/connectors", follow_redirects=False).status_code == 303


def test_an_unknown_key_is_refused(client: TestClient) -> None:
    form = client.get("/admin/login")
    answer = client.post("/admin/login", data={"api_key": "ih_abc_nope", "csrf_token": csrf_token(form.text)})
    assert answer.status_code == 401
    assert "Unknown or revoked" in answer.text
    assert "ih_abc_nope" not in answer.text


def test_the_login_form_needs_its_csrf_token(client: TestClient, hub: Hub) -> None:
    key = hub.api_keys.create("admin", [Scope.ADMIN]).key
    client.get("/admin/login")
    answer = client.post(
        "/admin/login", data={"api_key": key, "csrf_token": "forged"}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert client.get("/admin/connectors", follow_redirects=False).status_code == 303


def test_the_session_cookie_holds_an_id_never_the_key(
    hub_with_connector: Hub, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login_form = client.get("/admin/login")
    cookie = login_form.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    key = log_in(client, hub_with_connector)
    _incident(hub_with_connector)
    assert all(key not in value for value in client.cookies.values())
    for path in PAGES:
        assert key not in client.get(path).text
    assert key not in caplog.text


def test_logging_out_ends_the_session(hub_with_connector: Hub, client: TestClient) -> None:
    log_in(client, hub_with_connector)
    page = client.get("/admin/connectors")
    stolen = dict(client.cookies)
    answer = client.post("/admin/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert answer.status_code == 303
    client.cookies.update(stolen)  # the old cookie is worth nothing now
    assert client.get("/admin/connectors", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(hub: Hub, client: TestClient) -> None:
    key = log_in(client, hub)
    assert client.get("/admin/incidents", follow_redirects=False).status_code == 200
    principal = hub.api_keys.verify(key)
    assert principal is not None
    hub.api_keys.revoke(principal.key_id)
    assert client.get("/admin/incidents", follow_redirects=False).status_code == 303


# ---- CSRF -----------------------------------------------------------------------------------------------


POSTS = [
    ("/admin/logout", {}),
    ("/admin/connectors/opsgenie/resume", {}),
    ("/admin/connectors/opsgenie/mapping", {"text": "x: 1"}),
    ("/admin/connectors/opsgenie/mapping/validate", {"text": "x: 1"}),
    ("/admin/connectors/opsgenie/mapping/preview/outbound", {"text": "x: 1"}),
    ("/admin/connectors/opsgenie/mapping/rollback", {"version": "1"}),
    ("/admin/deliveries/1/replay", {}),
    ("/admin/deliveries/1/discard", {}),
]


@pytest.mark.parametrize(("path", "form"), POSTS)
def test_every_post_needs_the_sessions_csrf_token(
    hub_with_connector: Hub, client: TestClient, path: str, form: dict[str, str]
) -> None:
    log_in(client, hub_with_connector)
    assert client.post(path, data=form, follow_redirects=False).status_code == 403
    assert client.post(path, data={**form, "csrf_token": "x" * 43}, follow_redirects=False).status_code == 403
    # Still logged in: a refused POST changed nothing.
    assert client.get("/admin/connectors", follow_redirects=False).status_code == 200


def test_a_csrf_token_is_accepted_in_the_htmx_header(hub_with_connector: Hub, client: TestClient) -> None:
    log_in(client, hub_with_connector)
    token = csrf_token(client.get("/admin/connectors").text)
    answer = client.post(
        "/admin/connectors/opsgenie/mapping/validate",
        data={"text": "severity: {}"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert "cannot be saved" in answer.text


# ---- connectors -----------------------------------------------------------------------------------------


def test_connectors_show_lag_pending_and_the_pause_reason(
    hub_with_connector: Hub, client: TestClient
) -> None:
    hub = hub_with_connector
    # The circuit breaker holds the connector's deliveries while it is paused: they wait, and lag grows.
    for _ in range(hub.settings.connector_failure_threshold):
        hub.connectors.record_failure("opsgenie", "HTTP 503 from the vendor")
    _incident(hub)
    log_in(client, hub)
    page = client.get("/admin/connectors").text
    assert 'data-connector="opsgenie"' in page
    assert "paused until" in page and "HTTP 503 from the vendor" in page
    row = page[page.index('data-connector="opsgenie"') :]
    pending = row[row.index('class="pending"') :]
    assert ">1</a>" in pending[:200]
    lag = row[row.index('class="lag"') :]
    assert lag[: lag.index("</td>")].strip().endswith("s")

    token = csrf_token(page)
    answer = client.post("/admin/connectors/opsgenie/resume", data={"csrf_token": token})
    assert "resumed" in answer.text
    assert not hub.connectors.state("opsgenie").paused_until


def test_connector_health_is_a_fragment_telling_why_it_is_unhealthy(
    hub_with_connector: Hub, client: TestClient
) -> None:
    log_in(client, hub_with_connector)
    answer = client.get("/admin/connectors/opsgenie/health", headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert "unhealthy" in answer.text
    assert "<html" not in answer.text


# ---- deliveries -----------------------------------------------------------------------------------------


def test_a_dead_delivery_is_listed_and_replayed(hub: Hub, client: TestClient, receiver: Receiver) -> None:
    delivery_id = _dead_subscriber_delivery(hub, receiver)
    log_in(client, hub)
    page = client.get("/admin/deliveries?state=dead")
    assert f'data-delivery="{delivery_id}"' in page.text
    assert "HTTP 400" in page.text
    receiver.default = Answer(204)
    answer = client.post(
        f"/admin/deliveries/{delivery_id}/replay", data={"csrf_token": csrf_token(page.text), "state": "dead"}
    )
    assert answer.status_code == 200
    assert f"Delivery {delivery_id} to subscriber:" in answer.text
    wait_until(lambda: hub.outbox.get(delivery_id).state == "delivered")
    assert len(receiver.requests) == 2
    (entry,) = [e for e in hub.audit.list() if e.action == "delivery.replay"]
    assert entry.target == f"delivery:{delivery_id}" and entry.actor.startswith("admin-ui-test (")
    assert entry.detail["via"] == "admin-ui"


def test_a_dead_delivery_is_discarded(hub: Hub, client: TestClient, receiver: Receiver) -> None:
    delivery_id = _dead_subscriber_delivery(hub, receiver)
    log_in(client, hub)
    page = client.get("/admin/deliveries?state=dead")
    answer = client.post(
        f"/admin/deliveries/{delivery_id}/discard", data={"csrf_token": csrf_token(page.text)}
    )
    assert "discarded" in answer.text
    assert hub.outbox.get(delivery_id).state == "cancelled"
    assert [e.target for e in hub.audit.list() if e.action == "delivery.discard"] == [
        f"delivery:{delivery_id}"
    ]
    assert f'data-delivery="{delivery_id}"' not in answer.text


def test_replaying_a_delivery_that_is_not_dead_shows_why_not(
    hub: Hub, client: TestClient, receiver: Receiver
) -> None:
    delivery_id = _dead_subscriber_delivery(hub, receiver)
    log_in(client, hub)
    token = csrf_token(client.get("/admin/deliveries").text)
    client.post(f"/admin/deliveries/{delivery_id}/discard", data={"csrf_token": token})
    answer = client.post(f"/admin/deliveries/{delivery_id}/replay", data={"csrf_token": token})
    assert answer.status_code == 409
    assert "only dead deliveries are replayed" in answer.text


# ---- incidents ------------------------------------------------------------------------------------------


def test_incidents_are_filtered_by_status_severity_and_team(hub: Hub, client: TestClient) -> None:
    _incident(hub, "Search slow", severity="SEV3_MEDIUM", assigned_team="search")
    _incident(hub, "Payments down", severity="SEV1_CRITICAL", assigned_team="payments")
    log_in(client, hub)
    everything = client.get("/admin/incidents").text
    assert "Search slow" in everything and "Payments down" in everything
    critical = client.get("/admin/incidents?severity=SEV1_CRITICAL").text
    assert "Payments down" in critical and "Search slow" not in critical
    search = client.get("/admin/incidents?team=search").text
    assert "Search slow" in search and "Payments down" not in search
    assert "No incident matches" in client.get("/admin/incidents?status=CLOSED").text


def test_incidents_are_searched_by_text_service_and_component(hub: Hub, client: TestClient) -> None:
    _incident(hub, "Search slow", description="Index rebuild stalled", affected_services=["search-api"])
    _incident(hub, "Payments down", affected_services=["payments-db"], tags=["component:replication"])
    log_in(client, hub)
    stalled = client.get("/admin/incidents?q=REBUILD").text
    assert "Search slow" in stalled and "Payments down" not in stalled
    assert 'value="REBUILD"' in stalled
    payments = client.get("/admin/incidents?service=payments-db").text
    assert "Payments down" in payments and "Search slow" not in payments
    replication = client.get("/admin/incidents?component=replication").text
    assert "Payments down" in replication and "Search slow" not in replication
    assert "No incident matches" in client.get("/admin/incidents?q=nowhere").text


def test_an_incident_page_shows_its_timeline(hub: Hub, client: TestClient) -> None:
    incident_id = _incident(hub, "Checkout 5xx", severity=Severity.SEV2_HIGH.value)
    log_in(client, hub)
    page = client.get(f"/admin/incidents/{incident_id}")
    assert page.status_code == 200
    number = hub.incidents.get(incident_id).number
    assert f"{number}: Checkout 5xx" in page.text
    assert f"Incident {number} opened" in page.text
    assert client.get("/admin/incidents/4b5a7c1e-0000-4000-8000-000000000000").status_code == 404


# ---- mappings -------------------------------------------------------------------------------------------


def test_an_invalid_mapping_is_shown_with_its_problems_and_not_saved(
    hub_with_connector: Hub, client: TestClient
) -> None:
    hub = hub_with_connector
    log_in(client, hub)
    page = client.get("/admin/connectors/opsgenie/mapping")
    text = hub.mappings.current("opsgenie").yaml
    broken = text.replace("status:", "status_:", 1)
    answer = client.post(
        "/admin/connectors/opsgenie/mapping", data={"text": broken, "csrf_token": csrf_token(page.text)}
    )
    assert answer.status_code == 422
    assert 'class="problem"' in answer.text
    assert "status_:" in answer.text  # the text typed is kept in the editor
    assert len(hub.mappings.versions("opsgenie")) == 1


def test_saving_diffing_and_rolling_back_a_mapping(hub_with_connector: Hub, client: TestClient) -> None:
    hub = hub_with_connector
    key = log_in(client, hub)
    page = client.get("/admin/connectors/opsgenie/mapping")
    token = csrf_token(page.text)
    text = hub.mappings.current("opsgenie").yaml
    changed = text.rstrip("\n") + "\n# reviewed by the on-call lead\n"
    saved = client.post(
        "/admin/connectors/opsgenie/mapping",
        data={"text": changed, "comment": "reviewed", "csrf_token": token},
    )
    assert saved.status_code == 200 and saved.url.path.endswith("/mapping/versions")
    assert "as version 2" in saved.text
    assert "+# reviewed by the on-call lead" in saved.text  # the diff of the two newest versions
    rolled = client.post(
        "/admin/connectors/opsgenie/mapping/rollback", data={"version": "1", "csrf_token": token}
    )
    assert "back to version 1 (now version 3)" in rolled.text
    assert hub.mappings.current("opsgenie").yaml == text
    principal = hub.api_keys.verify(key)
    assert principal is not None
    actor = f"admin-ui-test ({principal.key_id})"
    assert [v.author for v in hub.mappings.versions("opsgenie")][:2] == [actor, actor]
    audit = [(e.actor, e.action, e.target, e.detail.get("version")) for e in hub.audit.list()]
    assert audit[:2] == [
        (actor, "mapping.rollback", "mapping:opsgenie", 3),
        (actor, "mapping.save", "mapping:opsgenie", 2),
    ]


def test_a_mapping_typed_in_a_browser_is_saved_with_its_own_line_ends(
    hub_with_connector: Hub, client: TestClient
) -> None:
    hub = hub_with_connector
    log_in(client, hub)
    page = client.get("/admin/connectors/opsgenie/mapping")
    text = hub.mappings.current("opsgenie").yaml
    as_submitted = (text + "# checked\n").replace("\n", "\r\n")  # how browsers send a textarea
    client.post(
        "/admin/connectors/opsgenie/mapping", data={"text": as_submitted, "csrf_token": csrf_token(page.text)}
    )
    assert hub.mappings.current("opsgenie").yaml == text + "# checked\n"
    assert hub.mappings.diff("opsgenie", 1, 2).count("\n-") == 0


def test_the_preview_maps_an_incident_with_the_text_in_the_editor(
    hub_with_connector: Hub, client: TestClient
) -> None:
    hub = hub_with_connector
    incident_id = _incident(hub, "Checkout 5xx", severity="SEV1_CRITICAL")
    log_in(client, hub)
    page = client.get("/admin/connectors/opsgenie/mapping")
    assert "Checkout 5xx" in page.text  # offered in the preview's incident picker
    text = hub.mappings.current("opsgenie").yaml
    answer = client.post(
        "/admin/connectors/opsgenie/mapping/preview/outbound",
        data={"text": text, "incident_id": incident_id, "csrf_token": csrf_token(page.text)},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert "preview-result" in answer.text and "Checkout 5xx" in answer.text
    broken = client.post(
        "/admin/connectors/opsgenie/mapping/preview/outbound",
        data={"text": "severity: [", "csrf_token": csrf_token(page.text)},
        headers={"HX-Request": "true"},
    )
    assert broken.status_code == 200
    assert "preview-result" not in broken.text


def test_the_inbound_preview_says_why_a_webhook_body_is_refused(
    hub_with_connector: Hub, client: TestClient
) -> None:
    hub = hub_with_connector
    log_in(client, hub)
    page = client.get("/admin/connectors/opsgenie/mapping")
    answer = client.post(
        "/admin/connectors/opsgenie/mapping/preview/inbound",
        data={
            "text": hub.mappings.current("opsgenie").yaml,
            "body": "this is not JSON",
            "csrf_token": csrf_token(page.text),
        },
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert 'role="alert"' in answer.text and "preview-result" not in answer.text


def test_mapping_pages_of_an_unknown_connector_are_not_found(
    hub_with_connector: Hub, client: TestClient
) -> None:
    log_in(client, hub_with_connector)
    answer = client.get("/admin/connectors/nope/mapping")
    assert answer.status_code == 404
    assert "no connector nope" in answer.text


def test_htmx_is_served_from_the_hub_itself(client: TestClient) -> None:
    answer = client.get("/admin/static/htmx.min.js")
    assert answer.status_code == 200
    assert "htmx" in answer.text[:200]


def test_only_http_links_from_a_vendor_become_links() -> None:
    assert (
        safe_url("https://example.atlassian.net/browse/OPS-17")
        == "https://example.atlassian.net/browse/OPS-17"
    )
    assert safe_url("javascript:alert(document.cookie)") is None
    assert safe_url("data:text/html,<script>") is None
    assert safe_url(None) is None


def test_login_page_visits_store_nothing(hub: Hub, client: TestClient) -> None:
    for _ in range(10):
        assert client.get("/admin/login").status_code == 200
    with hub.db.read() as session:
        assert session.scalar(select(func.count()).select_from(AdminSessionRow)) == 0

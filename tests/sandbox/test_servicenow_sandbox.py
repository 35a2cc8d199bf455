"""Contract tests of the ServiceNow sandbox against ServiceNow's own documents, over loopback HTTPS.

There is no OpenAPI document for the Table API (tests/vendor/servicenow/NOTES.md): the contract is built from
the Table API reference's examples (`table-api-examples/*.json`, requests and responses byte-exact from
docs/c_TableAPI.md) and the incident choice values (`incident-choice-values.json`). The documented
requests are replayed as written; the answers must have the documented shape: `{"result": ...}`, the
documented fields, every value a string, references as `{"link", "value"}`, sys_ids of 32 hex
characters, choice values from the documented lists and priority from the documented lookup table.
Webhooks are the business rule's REST message (the hub's own contract, docs/servicenow.md).
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from incident_hub.connectors.base import ChangeKind, ConnectorConfig, Secret
from incident_hub.connectors.servicenow import ServiceNowConnector
from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.servicenow import ServiceNowState, group_id, servicenow_sandbox, user_id
from tests.support import VENDOR, Receiver

SERVICENOW = VENDOR / "servicenow"
EXAMPLES = SERVICENOW / "table-api-examples"
CHOICES = json.loads((SERVICENOW / "incident-choice-values.json").read_text())
USER, PASSWORD, SECRET = "incident.hub", "sn-password", "business-rule-secret"
CONTROL = "/_sandbox/servicenow"
SYS_ID = re.compile(r"^[0-9a-f]{32}$")


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return body


def documented_request(method: str) -> dict[str, Any]:
    requests: list[dict[str, Any]] = example("requests.json")["examples"]
    return next(r for r in requests if r["method"] == method)


def choice_values(field: str) -> set[str]:
    return {c["value"] for c in CHOICES[field]}


def assert_table_api_record(record: dict[str, Any], *, documented: dict[str, Any]) -> None:
    """The shape of the documented incident records: the same fields, every value a string, references
    as {link, value} exactly where the documented record has one for a set value."""
    assert set(documented) <= set(record), set(documented) - set(record)
    for name, value in record.items():
        if isinstance(value, dict):
            assert set(value) == {"link", "value"}, name
            assert value["link"].endswith("/" + value["value"]), name
        else:
            assert isinstance(value, str), name
        if isinstance(documented.get(name), dict) and record[name] != "":
            assert isinstance(value, dict), f"{name} is a reference"
    assert SYS_ID.match(record["sys_id"])
    assert re.match(r"^INC\d{7}$", record["number"])
    assert record["state"] in choice_values("state")
    assert record["impact"] in choice_values("impact") and record["urgency"] in choice_values("urgency")
    lookup = {(r["impact"], r["urgency"]): r["priority"] for r in CHOICES["priority_lookup_default"]}
    assert record["priority"] == lookup[record["impact"], record["urgency"]]


class Instance:
    def __init__(self, sandbox: Sandbox, state: ServiceNowState) -> None:
        self.sandbox, self.state = sandbox, state
        trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
        self.api = httpx.Client(
            base_url=sandbox.url,
            verify=trust,
            auth=(USER, PASSWORD),
            headers={"Accept": "application/json"},
            timeout=10,
        )
        self.control = httpx.Client(base_url=sandbox.url + CONTROL, verify=trust, timeout=10)

    def open(self, **values: Any) -> dict[str, Any]:
        response = self.control.post("/incidents", json={"short_description": "Printer on fire", **values})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()["result"]
        return result


@pytest.fixture
def receiver_url(receiver: Receiver) -> str:
    return receiver.url


@pytest.fixture
def instance(receiver: Receiver) -> Iterator[Instance]:
    app, state = servicenow_sandbox(USER, PASSWORD, receiver.url, SECRET)
    with Sandbox(app, state) as sandbox:
        world = Instance(sandbox, state)
        yield world
        world.api.close()
        world.control.close()


# ---- the documented requests ----------------------------------------------------------------------------


def test_documented_post_creates_an_incident_shaped_like_the_documented_answer(instance: Instance) -> None:
    documented = documented_request("POST")
    body = documented["data_as_json"] | {"assignment_group": group_id("Service Desk")}
    response = instance.api.post("/api/now/table/incident", json=body)
    assert response.status_code == 201
    record = response.json()["result"]
    assert_table_api_record(record, documented=example("POST_incident.response.json")["result"])
    # impact 2, urgency 2: priority 3, as in the documented answer.
    assert (record["priority"], record["state"], record["sys_mod_count"]) == ("3", "1", "0")
    assert record["assignment_group"]["value"] == group_id("Service Desk")
    assert response.headers["location"].endswith(f"/api/now/table/incident/{record['sys_id']}")


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_documented_update_sets_urgency_recomputes_priority_and_journals_the_comment(
    instance: Instance, method: str
) -> None:
    sys_id = instance.open(impact="2", urgency="2")["sys_id"]
    documented = documented_request(method)
    body = documented["data_as_json"] | {"assigned_to": user_id("fred.luddy")}
    response = instance.api.request(method, f"/api/now/table/incident/{sys_id}", json=body)
    assert response.status_code == 200
    record = response.json()["result"]
    assert_table_api_record(record, documented=example(f"{method}_incident.response.json")["result"])
    assert (record["urgency"], record["priority"], record["sys_mod_count"]) == ("1", "2", "1")
    # A journal field appends an entry; the record reads it as empty, as the documented answer shows.
    assert record["comments"] == ""
    (entry,) = instance.state.journal(sys_id)
    assert (entry["element"], entry["value"], entry["sys_created_by"]) == (
        "comments",
        "Elevating urgency, this is a blocking issue",
        USER,
    )


def test_documented_get_and_limited_list_pages_with_total_count_and_links(instance: Instance) -> None:
    for n in range(3):
        instance.open(short_description=f"Incident {n}")
    response = instance.api.get("/api/now/table/incident", params={"sysparm_limit": 1})
    assert response.status_code == 200
    (record,) = response.json()["result"]
    assert_table_api_record(record, documented=example("GET_incident_by_sys_id.response.json")["result"])
    assert response.headers["x-total-count"] == "3"
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["link"]))
    assert set(links) == {"first", "next", "last"}
    assert "sysparm_offset=1" in links["next"] and "sysparm_offset=2" in links["last"]
    one = instance.api.get(f"/api/now/table/incident/{record['sys_id']}").json()["result"]
    assert one == record
    versioned = instance.api.get(f"/api/now/v2/table/incident/{record['sys_id']}").json()["result"]
    assert versioned == record


def test_display_values_fields_and_reference_links_follow_the_parameters(instance: Instance) -> None:
    sys_id = instance.open(impact="1", urgency="1", assignment_group="Network")["sys_id"]
    path = f"/api/now/table/incident/{sys_id}"
    fields = "state,priority,assignment_group,nonsense"
    plain = instance.api.get(path, params={"sysparm_fields": fields}).json()["result"]
    assert set(plain) == {"state", "priority", "assignment_group"}  # invalid fields are ignored
    assert plain["assignment_group"]["value"] == group_id("Network") and "link" in plain["assignment_group"]
    shown = instance.api.get(path, params={"sysparm_fields": fields, "sysparm_display_value": "true"})
    assert shown.json()["result"]["state"] == "New"
    assert shown.json()["result"]["priority"] == "1 - Critical"
    assert shown.json()["result"]["assignment_group"]["display_value"] == "Network"
    both = instance.api.get(
        path,
        params={
            "sysparm_fields": fields,
            "sysparm_display_value": "all",
            "sysparm_exclude_reference_link": "true",
        },
    ).json()["result"]
    assert both["priority"] == {"display_value": "1 - Critical", "value": "1"}
    assert both["assignment_group"] == {"display_value": "Network", "value": group_id("Network")}


def test_encoded_queries_filter_and_order(instance: Instance) -> None:
    a = instance.open(short_description="alpha", impact="1", urgency="1", correlation_id="hub-a")
    instance.open(short_description="beta", impact="3", urgency="3")
    c = instance.open(short_description="gamma", impact="1", urgency="2")

    def numbers(query: str) -> list[str]:
        found = instance.api.get("/api/now/table/incident", params={"sysparm_query": query}).json()
        return [r["number"] for r in found["result"]]

    assert numbers("correlation_id=hub-a") == [a["number"]]
    assert numbers("impact=1^ORDERBYDESCnumber") == [c["number"], a["number"]]
    assert numbers("priority<=2^ORDERBYnumber") == [a["number"], c["number"]]
    assert numbers(f"sys_updated_on>={a['sys_updated_on']}^short_descriptionSTARTSWITHg") == [c["number"]]
    assert numbers("short_description=beta^ORshort_description=gamma^ORDERBYnumber") == numbers(
        "impact!=1^ORimpact=1^urgency!=1^ORDERBYnumber"
    )
    assert numbers("no_such_field=1^short_description=alpha") == [a["number"]]  # invalid part ignored


# ---- refusals, in ServiceNow's words ----------------------------------------------------------------------


def test_wrong_or_missing_credentials_get_servicenows_401_body(instance: Instance) -> None:
    for auth in [("incident.hub", "wrong"), ("someone", PASSWORD)]:
        response = instance.api.get("/api/now/table/incident", auth=auth)
        assert response.status_code == 401
        assert response.json() == {
            "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
            "status": "failure",
        }


def test_resolving_without_resolution_code_and_notes_is_refused_by_the_data_policy(
    instance: Instance,
) -> None:
    sys_id = instance.open()["sys_id"]
    path = f"/api/now/table/incident/{sys_id}"
    refused = instance.api.patch(path, json={"state": "6", "close_notes": "Rebooted"})
    assert refused.status_code == 403
    body = refused.json()
    assert body["status"] == "failure" and "Data Policy Exception" in body["error"]["detail"]
    assert "Resolution code" in body["error"]["detail"]
    assert instance.state.record("incident", sys_id)["state"] == "1"  # nothing was kept
    done = instance.api.patch(
        path, json={"state": "6", "close_code": "Solution provided", "close_notes": "Rebooted"}
    )
    assert done.status_code == 200
    assert done.json()["result"]["resolved_by"]["value"] == user_id(USER)


def test_unknown_record_and_table_are_refused(instance: Instance) -> None:
    missing = instance.api.get("/api/now/table/incident/" + "0" * 32)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "No Record found"
    assert instance.api.get("/api/now/table/no_such_table").status_code == 400
    no_type = instance.api.post("/api/now/table/incident", content=b"{}", headers={"Content-Type": ""})
    assert no_type.status_code == 400


def test_knobs_answer_429_with_retry_after_and_the_ledger_records_each_call(instance: Instance) -> None:
    instance.state.knobs.rate_limit_next = 1
    instance.state.knobs.retry_after_seconds = 3
    limited = instance.api.get("/api/now/table/incident")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert limited.json()["status"] == "failure"
    assert instance.api.get("/api/now/table/incident").status_code == 200
    calls = [(e.method, e.status) for e in instance.state.ledger.entries(direction="in")]
    assert calls == [("GET", 429), ("GET", 200)]
    assert "authorization" not in instance.state.ledger.entries()[0].headers


# ---- the business rule's webhook --------------------------------------------------------------------------


def connector(**options: Any) -> ServiceNowConnector:
    return ServiceNowConnector(
        ConnectorConfig(
            id="servicenow",
            kind="servicenow",
            base_url="https://dev00000.service-now.com",
            webhook_secret=Secret(env="SN_WEBHOOK_SECRET"),
            options={"username": USER, "assignment_groups": {"network": group_id("Network")}, **options},
        )
    )


def deliveries(receiver: Receiver, count: int) -> list[tuple[dict[str, str], bytes]]:
    return [({k.lower(): v for k, v in r.headers.items()}, r.body) for r in receiver.wait_for(count)]


def test_people_in_the_form_send_webhooks_that_parse_into_the_changes_they_made(
    instance: Instance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SN_WEBHOOK_SECRET", SECRET)
    record = instance.open(impact="2", urgency="2", correlation_id="5b8d7b26-8f75-47bd-b0a9-e652ee9e654f")
    sys_id = record["sys_id"]
    instance.control.post(f"/incidents/{sys_id}/priority", json={"impact": "1", "urgency": "1"})
    instance.control.post(f"/incidents/{sys_id}/assignment", json={"assignment_group": "Network"})
    instance.control.post(
        f"/incidents/{sys_id}/comments", json={"text": "We are on it", "actor": "fred.luddy"}
    )
    instance.control.post(f"/incidents/{sys_id}/work_notes", json={"text": "Restarting the spooler"})
    instance.control.post(
        f"/incidents/{sys_id}/state",
        json={"state": "6", "close_code": "Solution provided", "close_notes": "Done"},
    )
    sent = deliveries(receiver, 6)
    sn = connector()
    changes = []
    for headers, body in sent:
        assert headers["x-incident-hub-secret"] == SECRET
        sn.verify_webhook(headers, body)
        changes.append(sn.parse_webhook(headers, body))

    (created,) = changes[0]
    assert (created.kind, created.external_id, created.external_key) == (
        ChangeKind.CREATED,
        sys_id,
        record["number"],
    )
    assert created.fields["priority"] == "3" and created.fields["short_description"] == "Printer on fire"
    assert created.hub_incident_id == "5b8d7b26-8f75-47bd-b0a9-e652ee9e654f"
    assert (created.actor, created.actor_is_self) == ("beth.anglin", False)
    (priority,) = changes[1]
    assert priority.fields == {"impact": "1", "urgency": "1", "priority": "1"}
    (assigned,) = changes[2]
    assert assigned.fields == {"assignment_group": "network"}
    (comment,) = changes[3]
    assert comment.kind is ChangeKind.NOTE and comment.note is not None
    assert (comment.note.body, comment.note.is_public, comment.note.author) == (
        "We are on it",
        True,
        "fred.luddy",
    )
    (work_note,) = changes[4]
    assert work_note.note is not None and work_note.note.is_public is False
    assert work_note.note.external_comment_id == instance.state.journal(sys_id)[1]["sys_id"]
    (resolved,) = changes[5]
    assert resolved.fields == {"state": "6", "close_notes": "Done"}
    # One id per record version: a resent REST message is the same delivery.
    ids = [sn.webhook_event_id(h, b) for h, b in sent]
    assert ids == [f"{sys_id}:{n}" for n in range(6)]


def test_the_integration_users_own_writes_come_back_marked_as_echoes(
    instance: Instance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SN_WEBHOOK_SECRET", SECRET)
    created = instance.api.post("/api/now/table/incident", json={"short_description": "From the hub"})
    sys_id = created.json()["result"]["sys_id"]
    instance.api.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": "[jira] alice: looking"})
    sn = connector()
    changes = [c for headers, body in deliveries(receiver, 2) for c in sn.parse_webhook(headers, body)]
    assert [c.kind for c in changes] == [ChangeKind.CREATED, ChangeKind.NOTE]
    assert all(c.actor_is_self for c in changes)


def test_basic_auth_webhooks_verify_with_the_configured_user(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SN_WEBHOOK_SECRET", "hook-password")
    app, state = servicenow_sandbox(
        USER, PASSWORD, receiver.url, "hub-hook:hook-password", webhook_auth="basic"
    )
    with Sandbox(app, state) as sandbox:
        trust = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
        httpx.post(
            f"{sandbox.url}{CONTROL}/incidents", json={"short_description": "Basic"}, verify=trust
        ).raise_for_status()
        ((headers, body),) = deliveries(receiver, 1)
    connector(webhook_auth="basic", webhook_username="hub-hook").verify_webhook(headers, body)

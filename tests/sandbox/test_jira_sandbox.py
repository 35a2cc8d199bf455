"""Contract tests of the Jira Cloud sandbox: the real `jira` client over loopback HTTPS, every exchange
checked against Atlassian's REST v3 OpenAPI spec, webhooks checked against real Jira Cloud deliveries."""

from __future__ import annotations

import json
import re
import ssl
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from jira import JIRA, JIRAError
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.validation.response.exceptions import MissingData

from incident_hub.sandbox.common import Sandbox
from incident_hub.sandbox.jira import HUMAN_ACCOUNT_ID, SERVICE_ACCOUNT_ID, SEVERITY_FIELD, jira_sandbox
from incident_hub.signing import sign_sha256, signature_matches
from tests.support import VENDOR, Receiver

JIRA_FILES = VENDOR / "jira"
SPEC = JIRA_FILES / "jira-cloud-platform-rest-v3.swagger-v3.v3.json"
EXAMPLES = JIRA_FILES / "webhook-examples" / "mattermost-plugin-jira"
SIGNATURE_VECTOR = JIRA_FILES / "webhook-signature" / "atlassian-secure-admin-webhooks-test-vector.json"

EMAIL, TOKEN, SECRET = "hub@example.com", "jira-api-token", "It's a Secret to Everybody"
START = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
JIRA_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}")
# Statuses any endpoint can answer that the spec leaves out (it lists 429 on 9 of ~600 operations,
# e.g. not on paths./rest/api/3/myself.get.responses, which has only 200 and 401).
UNDOCUMENTED_STATUSES = {429, 500, 502, 503, 504}


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


class AtlassianRequest(RequestsOpenAPIRequest):
    """The spec's only server is https://your-domain.atlassian.net; the sandbox stands in for it."""

    @property
    def host_url(self) -> str:
        return "https://your-domain.atlassian.net"


class SpecCheck:
    """A `requests` response hook validating each request and response against the v3 spec."""

    def __init__(self, spec: OpenAPI) -> None:
        self.spec = spec
        self.checked: list[str] = []
        self.problems: list[str] = []

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = AtlassianRequest(response.request)
        exchange = f"{request.method.upper()} {request.path} -> {response.status_code}"
        self.checked.append(exchange)
        self._validate(exchange, lambda: self.spec.validate_request(request))
        if response.status_code not in UNDOCUMENTED_STATUSES:
            self._validate(
                exchange,
                lambda: self.spec.validate_response(request, RequestsOpenAPIResponse(response)),
                empty_2xx=response.ok and not response.content,
            )

    def _validate(self, exchange: str, validate: Callable[[], None], *, empty_2xx: bool = False) -> None:
        try:
            validate()
        except OpenAPIError as error:
            # The spec gives bodiless answers a JSON body of any shape, e.g.
            # paths./rest/api/3/issue/{issueIdOrKey}/transitions.post.responses.204.content,
            # paths./rest/api/3/issue/{issueIdOrKey}.put.responses.204.content and
            # paths./rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}.put.responses.200/201.content;
            # Jira sends none. Accepted for empty 2xx answers only.
            if isinstance(error, MissingData) and empty_2xx:
                return
            detail = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
            self.problems.append(f"{exchange}: {type(error).__name__}: {detail}")

    def take_problems(self) -> list[str]:
        found, self.problems = self.problems, []
        return found


@pytest.fixture(scope="session")
def spec() -> OpenAPI:
    # The published file fails openapi-spec-validator: four array parameters give their items
    # `default: ""` outside their `enum` (paths./rest/api/3/classification-levels.get.parameters[0],
    # /rest/api/3/field/search.get.parameters[2], /rest/api/3/screens.get.parameters[4],
    # /rest/api/3/workflow/rule/config.get.parameters[2]). None is used here, so the spec itself is not
    # validated; every exchange still is.
    # The spec types timestamps `format: date-time` (RFC 3339, e.g. components.schemas.Comment.properties
    # .created) while Jira, and the spec's own examples, write "2021-01-17T12:34:00.000+0000": the offset has
    # no colon. Timestamps are held to Jira's form instead.
    config = Config(spec_validator_cls=None, extra_format_validators={"date-time": is_jira_time})
    return OpenAPI.from_file_path(str(SPEC), config=config)


def is_jira_time(value: object) -> bool:
    return not isinstance(value, str) or JIRA_TIME.fullmatch(value) is not None


@pytest.fixture
def spec_check(spec: OpenAPI) -> Iterator[SpecCheck]:
    check = SpecCheck(spec)
    yield check
    assert check.problems == []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start_sandbox(clock: Clock) -> Iterator[Callable[..., Sandbox]]:
    with ExitStack() as stack:

        def start(hub_webhook_url: str | None = None, **options: Any) -> Sandbox:
            app, state = jira_sandbox(EMAIL, TOKEN, SECRET, hub_webhook_url, clock=clock, **options)
            return stack.enter_context(Sandbox(app, state))

        yield start


@pytest.fixture
def sandbox(start_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return start_sandbox()


@pytest.fixture
def connect(start_sandbox: Callable[..., Sandbox], spec_check: SpecCheck) -> Iterator[Callable[..., JIRA]]:
    """Clients as the connector builds them, trusting only the sandbox's CA."""
    clients: list[JIRA] = []

    def open_client(sandbox: Sandbox, *, token: str = TOKEN, cloud: bool = True) -> JIRA:
        client = JIRA(
            server=sandbox.url,
            basic_auth=(EMAIL, token),
            get_server_info=False,
            options={
                "verify": str(sandbox.ca_bundle),
                "rest_api_version": "3",
                "check_update": False,
                # A JIRAError keeps its response's socket open (through its traceback) after the client
                # closes, and an open TLS connection holds up the sandbox's shutdown: one request each.
                "headers": {"Connection": "close"},
            },
            max_retries=0,
        )
        clients.append(client)
        # jira 3.10 sends search_issues to /search/jql only when it knows it talks to Cloud, which
        # get_server_info=False leaves unknown (client.py: JIRA.search_issues, `if self._is_cloud`).
        if cloud:
            client.deploymentType = "Cloud"
        # requests lets REQUESTS_CA_BUNDLE replace `verify` only when it is True/None; the session's verify
        # is the CA path, and without the environment no proxy can get in between either.
        client._session.trust_env = False
        client._session.hooks["response"].append(spec_check)
        return client

    yield open_client
    for client in clients:
        client.close()


def person(sandbox: Sandbox) -> httpx.Client:
    """Someone in Jira's UI, through the sandbox control endpoints."""
    return httpx.Client(
        base_url=f"{sandbox.url}/_sandbox/jira", verify=ssl.create_default_context(cafile=sandbox.ca_bundle)
    )


def create_incident(jira: JIRA, summary: str = "Checkout is down", **fields: Any) -> str:
    created = jira.create_issue(
        fields={"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": summary, **fields},
        prefetch=False,
    )
    return str(created.key)


def test_client_creates_an_incident_and_reads_it_back_in_v3_shape(
    sandbox: Sandbox, connect: Callable[..., JIRA], spec_check: SpecCheck
) -> None:
    jira = connect(sandbox)
    created = jira.create_issue(
        fields={
            "project": {"key": "OPS"},
            "issuetype": {"name": "Incident"},
            "summary": "Checkout is down",
            "description": adf("Payments fail with 502."),
            "priority": {"name": "High"},
            "labels": ["hub", "sev2"],
            "assignee": {"accountId": HUMAN_ACCOUNT_ID},
            SEVERITY_FIELD: {"value": "Sev2"},
        },
        prefetch=False,
    )

    assert (created.key, created.id) == ("OPS-1", "10000")
    assert created.self == f"{sandbox.url}/rest/api/3/issue/10000"
    fields = jira.issue("OPS-1").raw["fields"]
    assert fields["status"]["name"] == "To Do"
    assert fields["status"]["statusCategory"]["key"] == "new"
    assert fields["priority"]["name"] == "High"
    assert fields["labels"] == ["hub", "sev2"]
    assert fields["description"] == adf("Payments fail with 502.")
    assert fields["assignee"]["accountId"] == HUMAN_ACCOUNT_ID
    assert fields["reporter"]["accountId"] == SERVICE_ACCOUNT_ID
    assert fields[SEVERITY_FIELD]["value"] == "Sev2"
    assert fields["updated"] == "2026-11-24T13:00:00.000+0000"
    assert fields["comment"]["total"] == 0
    assert [e.method for e in sandbox.state.ledger.entries(direction="in")] == ["POST", "GET"]
    assert len(spec_check.checked) == 2


def test_missing_required_custom_field_raises_jira_field_error(
    sandbox: Sandbox, connect: Callable[..., JIRA]
) -> None:
    jira = connect(sandbox)
    fields = {"project": {"key": "SEC"}, "issuetype": {"id": "10001"}, "summary": "Leaked key"}

    with pytest.raises(JIRAError) as refused:
        jira.create_issue(fields=fields, prefetch=False)

    assert refused.value.status_code == 400
    assert refused.value.response.json() == {
        "errorMessages": [],
        "errors": {"customfield_10042": "Severity is required."},
    }
    assert "Severity is required." in refused.value.text
    assert (
        jira.create_issue(fields=fields | {SEVERITY_FIELD: {"value": "Sev1"}}, prefetch=False).key == "SEC-1"
    )


def test_rich_text_must_be_adf_in_v3(sandbox: Sandbox, connect: Callable[..., JIRA]) -> None:
    jira = connect(sandbox)

    with pytest.raises(JIRAError) as refused:
        create_incident(jira, description="plain text")

    assert refused.value.response.json()["errors"] == {
        "description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    }
    key = create_incident(jira)
    with pytest.raises(JIRAError) as refused:
        jira.add_comment(key, "plain text")
    assert refused.value.response.json()["errors"] == {"comment": "Comment body is not valid!"}


def test_transition_by_target_status_and_unavailable_transition_is_refused(
    sandbox: Sandbox, connect: Callable[..., JIRA], spec_check: SpecCheck
) -> None:
    jira = connect(sandbox)
    key = create_incident(jira)

    def move_to(status: str) -> None:
        transition = next(t for t in jira.transitions(key) if t["to"]["name"] == status)
        # By name: jira-python turns a numeric id into an int, which the spec types as a string.
        jira.transition_issue(key, transition["name"])

    move_to("In Progress")
    assert jira.issue(key).raw["fields"]["status"]["statusCategory"]["key"] == "indeterminate"
    move_to("Cancelled")
    fields = jira.issue(key).raw["fields"]
    assert (fields["status"]["name"], fields["status"]["statusCategory"]["key"]) == ("Cancelled", "done")
    assert fields["resolution"]["name"] == "Won't Do"
    assert [t["to"]["name"] for t in jira.transitions(key)] == ["To Do"]

    with pytest.raises(JIRAError) as refused:
        jira.transition_issue(key, "21")  # Start Progress, not available from a done status

    assert refused.value.status_code == 400
    assert refused.value.response.json()["errorMessages"] == [
        "Transition id '21' is not valid for this issue."
    ]
    # jira-python sends a numeric transition id as a JSON number; the spec (components.schemas.IssueTransition
    # .properties.id) says string. Jira takes both, and so does the sandbox.
    problems = spec_check.take_problems()
    assert len(problems) == 1 and "21 is not of type 'string'" in problems[0]


def test_comments_round_trip_and_edits_are_kept(sandbox: Sandbox, connect: Callable[..., JIRA]) -> None:
    jira = connect(sandbox)
    key = create_incident(jira)

    first = jira.add_comment(key, adf("Investigating"))
    jira.add_comment(key, adf("Mitigated"))
    first.update(body=adf("Investigating the database"))

    comments = jira.comments(key)
    assert [c.raw["body"] for c in comments] == [adf("Investigating the database"), adf("Mitigated")]
    assert comments[0].author.accountId == SERVICE_ACCOUNT_ID
    assert re.fullmatch(r"\d+", comments[0].id)
    assert JIRA_TIME.fullmatch(comments[0].created)


def test_issue_property_is_stored_and_found_by_jql(
    start_sandbox: Callable[..., Sandbox], connect: Callable[..., JIRA], clock: Clock
) -> None:
    sandbox = start_sandbox(search_lag_seconds=30)
    jira = connect(sandbox)
    key = create_incident(jira)
    issue_id = int(jira.issue(key).id)

    jira.add_issue_property(key, "hub", {"incidentId": "inc_42"})
    jira.add_issue_property(key, "notes", {"seen": True})

    assert jira.issue_property(key, "hub").value.incidentId == "inc_42"
    query = 'issue.property[hub].incidentId = "inc_42"'
    # /search/jql is eventually consistent; reconcileIssues asks for read-after-write on named issues.
    assert [i.key for i in jira.enhanced_search_issues(query)] == []
    assert [i.key for i in jira.enhanced_search_issues(query, reconcileIssues=[issue_id])] == [key]
    clock.advance(1)
    assert [i.key for i in jira.enhanced_search_issues(query)] == [key]
    with pytest.raises(JIRAError) as refused:
        jira.enhanced_search_issues('issue.property[notes].seen = "true"')
    assert refused.value.status_code == 400


def test_search_by_updated_window_in_the_searchers_time_zone_pages_by_token(
    start_sandbox: Callable[..., Sandbox], connect: Callable[..., JIRA], clock: Clock
) -> None:
    sandbox = start_sandbox(time_zone="Europe/Berlin")
    jira = connect(sandbox)
    create_incident(jira, "before the window")
    for summary in ("one", "two", "three", "four"):
        clock.advance(10)
        create_incident(jira, summary)
    jira.create_issue(
        fields={"project": {"key": "SEC"}, "issuetype": {"name": "Incident"}, "summary": "other project"}
        | {SEVERITY_FIELD: {"value": "Sev3"}},
        prefetch=False,
    )
    # 13:10 UTC is 14:10 in Berlin: JQL dates are wall-clock times of the searching user.
    query = 'project = OPS AND updated >= "2026/11/24 14:10" ORDER BY updated ASC'

    first = jira.enhanced_search_issues(query, maxResults=3, fields="summary,updated")
    rest = jira.enhanced_search_issues(
        query, maxResults=3, fields="summary,updated", nextPageToken=first.nextPageToken
    )
    everything = jira.search_issues(query, maxResults=0, fields="summary")

    assert [i.fields.summary for i in first] == ["one", "two", "three"]
    assert first.nextPageToken
    assert [i.fields.summary for i in rest] == ["four"]
    assert rest.nextPageToken is None
    assert [i.fields.summary for i in everything] == ["one", "two", "three", "four"]
    assert first[0].fields.updated == "2026-11-24T14:10:00.000+0100"
    ids_only = jira.enhanced_search_issues(query, fields="id", json_result=True)
    assert ids_only["issues"][0] == {"id": "10001"} and ids_only["isLast"] is True


@pytest.mark.parametrize(
    "query",
    [
        "ORDER BY updated DESC",
        "project = OPS OR project = SEC",
        'summary ~ "down"',
        "project = NOPE",
        'updated >= "yesterday"',
        'project = OPS AND updated >= "2026/11/24 14:10',
    ],
)
def test_unsupported_or_invalid_jql_is_a_400_in_jiras_error_shape(
    sandbox: Sandbox, connect: Callable[..., JIRA], query: str
) -> None:
    jira = connect(sandbox)

    with pytest.raises(JIRAError) as refused:
        jira.enhanced_search_issues(query)

    assert refused.value.status_code == 400
    body = refused.value.response.json()
    assert set(body) == {"errorMessages", "errors"} and len(body["errorMessages"]) == 1


def test_legacy_search_endpoint_is_gone_as_on_jira_cloud(
    sandbox: Sandbox, connect: Callable[..., JIRA], spec_check: SpecCheck
) -> None:
    jira = connect(sandbox, cloud=False)

    with pytest.raises(JIRAError) as refused:
        jira.search_issues("project = OPS")

    assert refused.value.status_code == 410
    assert "/rest/api/3/search/jql" in refused.value.text
    # The spec still lists the removed endpoint (deprecated) without a 410 answer, and jira-python sends
    # validateQuery=True where the spec's enum has "true".
    problems = [p.split(": ")[1] for p in spec_check.take_problems()]
    assert problems == ["InvalidParameter", "ResponseNotFound"]


def test_wrong_api_token_is_401(sandbox: Sandbox, connect: Callable[..., JIRA]) -> None:
    jira = connect(sandbox, token="wrong")

    with pytest.raises(JIRAError) as refused:
        jira.myself()

    assert refused.value.status_code == 401
    assert refused.value.response.json()["errorMessages"] == [
        "Client must be authenticated to access this resource."
    ]
    assert connect(sandbox).myself()["accountId"] == SERVICE_ACCOUNT_ID
    assert "authorization" not in sandbox.state.ledger.entries()[0].headers


def test_tls_is_verified_against_the_sandbox_ca_only(sandbox: Sandbox, connect: Callable[..., JIRA]) -> None:
    stranger = JIRA(
        server=sandbox.url,
        basic_auth=(EMAIL, TOKEN),
        get_server_info=False,
        options={"rest_api_version": "3", "check_update": False},
        max_retries=0,
    )

    with pytest.raises(requests.exceptions.SSLError):
        stranger.myself()
    stranger.close()

    assert sandbox.state.ledger.entries() == []
    assert connect(sandbox).server_info()["deploymentType"] == "Cloud"


def test_injected_rate_limit_and_server_error_surface_as_client_errors(
    sandbox: Sandbox, connect: Callable[..., JIRA]
) -> None:
    jira = connect(sandbox)
    sandbox.state.knobs.rate_limit_next = 1
    sandbox.state.knobs.retry_after_seconds = 7

    with pytest.raises(JIRAError) as limited:
        create_incident(jira)
    sandbox.state.knobs.fail_next = [500]
    with pytest.raises(JIRAError) as failed:
        create_incident(jira)
    key = create_incident(jira)

    assert (limited.value.status_code, limited.value.response.headers["Retry-After"]) == (429, "7")
    assert failed.value.status_code == 500
    assert key == "OPS-1"
    received = sandbox.state.ledger.entries(direction="in")
    assert [(e.status, e.note) for e in received] == [(429, "injected"), (500, "injected"), (201, None)]
    assert len(sandbox.state.ledger.writes()) == 1


def test_signature_helper_matches_atlassian_test_vector() -> None:
    vector = json.loads(SIGNATURE_VECTOR.read_text())
    method, _, digest = vector["header_value"].partition("=")

    assert method == "sha256"
    assert sign_sha256(vector["secret"], vector["payload_utf8"].encode()) == digest


def cloud_examples() -> dict[str, list[dict[str, Any]]]:
    """Jira Cloud deliveries (the two Server/DC ones are left out), by webhookEvent."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(EXAMPLES.glob("*.json")):
        body = json.loads(path.read_text())
        if ".atlassian.net/" in body["issue"]["self"]:
            grouped[body["webhookEvent"]].append(body)
    return grouped


def assert_shaped_like_jira_cloud(body: dict[str, Any], examples: list[dict[str, Any]]) -> None:
    event = body["webhookEvent"]
    assert any(set(body) == set(example) for example in examples), event
    assert set(body["issue"]) == {"id", "self", "key", "fields"}
    assert "/rest/api/2/issue/" in body["issue"]["self"]
    fields = {k for k in body["issue"]["fields"] if not k.startswith("customfield_")}
    known = {k for example in examples for k in example["issue"]["fields"]}
    assert fields <= known, fields - known
    if "comment" in body:
        assert set(body["issue"]["fields"]) == set(examples[0]["issue"]["fields"])
        assert set(body["comment"]) == set(examples[0]["comment"])
        assert isinstance(body["comment"]["body"], str)
        assert "/rest/api/2/issue/" in body["comment"]["self"]
    else:
        assert body["issue_event_type_name"] in {example["issue_event_type_name"] for example in examples}
        assert isinstance(body["issue"]["fields"]["description"], str | None)
        user_keys = {k for example in examples for k in example["user"]} | {"accountType"}
        assert set(body["user"]) <= user_keys
        assert set(body["changelog"]) == {"id", "items"}
        item_shapes = {frozenset(item) for example in examples for item in example["changelog"]["items"]}
        assert all(frozenset(item) in item_shapes for item in body["changelog"]["items"])


def test_webhooks_are_signed_and_shaped_like_jira_cloud(
    start_sandbox: Callable[..., Sandbox], connect: Callable[..., JIRA], receiver: Receiver
) -> None:
    sandbox = start_sandbox(receiver.url)
    jira = connect(sandbox)
    key = create_incident(jira, priority={"name": "High"})
    jira.issue(key).update(fields={"priority": {"name": "Highest"}})
    jira.transition_issue(key, "Start Progress")
    comment = jira.add_comment(key, adf("Investigating"))
    comment.update(body=adf("Investigating the database"))
    with person(sandbox) as ui:
        mia = {"actor": HUMAN_ACCOUNT_ID}
        created = ui.post("/issues", json=mia | {"summary": "Disk full", "description": "On db-3"})
        other = created.json()["key"]
        ui.post(f"/issues/{other}/transitions", json=mia | {"to": "Done"}).raise_for_status()
        said = ui.post(f"/issues/{other}/comments", json=mia | {"body": "Freed 20 GB"}).json()
        ui.post(f"/issues/{other}/priority", json=mia | {"priority": "Low"}).raise_for_status()
        ui.post(f"/issues/{other}/assignee", json=mia | {"assignee": HUMAN_ACCOUNT_ID}).raise_for_status()
        ui.patch(f"/issues/{other}", json=mia | {"fields": {SEVERITY_FIELD: "Sev1"}}).raise_for_status()
        ui.put(
            f"/issues/{other}/comments/{said['id']}", json=mia | {"body": "Freed 25 GB"}
        ).raise_for_status()

    deliveries = receiver.wait_for(12)
    examples = cloud_examples()
    bodies = [d.json() for d in deliveries]
    for delivery, body in zip(deliveries, bodies, strict=True):
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        method, _, digest = headers["x-hub-signature"].partition("=")
        assert method == "sha256" and signature_matches(SECRET, delivery.body, digest)
        assert_shaped_like_jira_cloud(body, examples[body["webhookEvent"]])
    identifiers = {
        {k.lower(): v for k, v in d.headers.items()}["x-atlassian-webhook-identifier"] for d in deliveries
    }
    assert len(identifiers) == 12

    def find(event: str, type_name: str | None, who: str) -> dict[str, Any]:
        return next(
            b
            for b in bodies
            if b["webhookEvent"] == event
            and b.get("issue_event_type_name") == type_name
            and who
            in (
                b.get("user", {}).get("accountId"),
                b.get("comment", {}).get("updateAuthor", {}).get("accountId"),
            )
        )

    assert find("jira:issue_created", "issue_created", SERVICE_ACCOUNT_ID)["issue"]["key"] == key
    assert (
        find("jira:issue_created", "issue_created", HUMAN_ACCOUNT_ID)["issue"]["fields"]["description"]
        == "On db-3"
    )
    raised = find("jira:issue_updated", "issue_updated", SERVICE_ACCOUNT_ID)["changelog"]["items"]
    assert [(i["fieldId"], i["from"], i["fromString"], i["to"], i["toString"]) for i in raised] == [
        ("priority", "2", "High", "1", "Highest")
    ]
    done = next(
        b
        for b in bodies
        if b.get("issue_event_type_name") == "issue_generic" and b["user"]["accountId"] == HUMAN_ACCOUNT_ID
    )
    assert {(i["fieldId"], i["toString"]) for i in done["changelog"]["items"]} == {
        ("resolution", "Done"),
        ("status", "Done"),
    }
    assigned = find("jira:issue_updated", "issue_assigned", HUMAN_ACCOUNT_ID)["changelog"]["items"]
    assert assigned[0]["tmpToAccountId"] == HUMAN_ACCOUNT_ID
    severity = [
        i for b in bodies for i in b.get("changelog", {}).get("items", []) if i["fieldId"] == SEVERITY_FIELD
    ]
    assert [(i["field"], i["fieldtype"], i["to"], i["toString"]) for i in severity] == [
        ("Severity", "custom", "10100", "Sev1")
    ]
    edited = find("comment_updated", None, HUMAN_ACCOUNT_ID)["comment"]
    assert edited["body"] == "Freed 25 GB" and edited["author"]["accountId"] == HUMAN_ACCOUNT_ID
    assert (
        find("comment_updated", None, SERVICE_ACCOUNT_ID)["comment"]["body"] == "Investigating the database"
    )
    assert all(isinstance(b["timestamp"], int) for b in bodies)

"""The admin UI in a real browser (Debian's headless Chromium, driven by Playwright) against a real hub
server with a Jira sandbox and a subscriber: log in, edit a mapping through an error to a save, preview,
roll back, replay a dead delivery, follow an incident to its Jira issue.

Screenshots of each step go to `$INCIDENT_HUB_TEST_ARTIFACTS/<test>/` (default: the test's tmp_path);
a screenshot that cannot be written is logged, never a failure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from incident_hub.api.auth import Scope
from incident_hub.commands import IncidentDraft, SubscriptionDraft
from incident_hub.hub import Hub
from incident_hub.sandbox.world import World, connect
from incident_hub.serving import ServerThread
from tests.conftest import Shots, test_settings
from tests.support import Answer, Receiver, wait_until

pytestmark = pytest.mark.slow



@dataclass
class Site:
    url: str
    hub: Hub
    world: World
    receiver: Receiver
    admin_key: str
    incident_id: str


@contextmanager
def closing_elsewhere(stack: ExitStack) -> Iterator[ExitStack]:
    try:
        yield stack
    finally:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(stack.close).result()


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    """A hub served over loopback with a Jira sandbox, a subscriber that refuses (400), and one incident."""
    from incident_hub.api.app import create_app

    app = create_app(test_settings(database_url, tmp_path, inbox_poll_seconds=0.05))
    hub: Hub = app.state.hub
    stack = ExitStack()
    # Closed in another thread: Playwright's sync API keeps an event loop running on this one, and the
    # sandboxes' teardown runs `asyncio.run`.
    with closing_elsewhere(stack):
        server = stack.enter_context(ServerThread(app))
        world = connect(stack, hub, server.url, tmp_path / "sandboxes", vendors=("jira",))
        receiver = Receiver().start()
        stack.callback(receiver.stop)
        receiver.default = Answer(400)
        hub.subscriptions.create(
            SubscriptionDraft.model_validate({"url": receiver.url, "event_types": ["*"], "secret": "s" * 16})
        )
        created = hub.incidents.create(
            IncidentDraft.model_validate(
                {"title": "Checkout API returning 502s", "assigned_team": "payments"}
            )
        )
        incident_id = str(created.incident.id)
        wait_until(lambda: hub.outbox.search(state="dead", target_kind="subscriber"), timeout=20)
        wait_until(lambda: hub.incidents.get(incident_id).external_refs, timeout=20)
        key = hub.api_keys.create("admin-ui", [Scope.ADMIN]).key
        yield Site(server.url, hub, world, receiver, key, incident_id)


def _log_in(page: Page, site: Site, key: str) -> None:
    page.fill("#api_key", key)
    page.click("form[action='/admin/login'] button[type=submit]")


def test_an_admin_logs_in_and_a_wrong_key_is_refused(page: Page, site: Site, shots: Shots) -> None:
    page.goto(f"{site.url}/admin")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    shots.take(page, "login")

    _log_in(page, site, "ih_000000000000_not-a-key")
    expect(page.locator("#login-error")).to_contain_text("Unknown or revoked")
    reader = site.hub.api_keys.create("reader", [Scope.READ]).key
    _log_in(page, site, reader)
    expect(page.locator("#login-error")).to_contain_text("lacks the admin scope")
    shots.take(page, "login-refused")

    _log_in(page, site, site.admin_key)
    expect(page).to_have_url(re.compile(r"/admin/overview$"))
    page.click("header nav a[href='/admin/connectors']")
    expect(page).to_have_url(re.compile(r"/admin/connectors$"))
    row = page.locator("tr[data-connector='jira']")
    expect(row.locator("td.health")).to_contain_text("healthy")
    assert site.admin_key not in page.content()
    shots.take(page, "connectors")

    page.click("header form.logout button")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(f"{site.url}/admin/connectors")
    expect(page).to_have_url(re.compile(r"/admin/login"))


def test_a_mapping_is_fixed_saved_previewed_and_rolled_back(page: Page, site: Site, shots: Shots) -> None:
    page.goto(f"{site.url}/admin/login?next=/admin/connectors/jira/mapping")
    _log_in(page, site, site.admin_key)
    expect(page).to_have_url(re.compile(r"/admin/connectors/jira/mapping$"))
    editor = page.locator("#mapping-text")
    original = editor.input_value()
    assert "    CLOSED: Done\n" in original and "    Duplicate: RESOLVED\n" in original

    # An error: CLOSED no longer maps to a Jira status. htmx validates as the admin types.
    editor.fill(original.replace("    CLOSED: Done\n", ""))
    expect(page.locator("#problems .problem").first).to_contain_text("CLOSED")
    shots.take(page, "mapping-inline-error")
    page.click("#save")
    expect(page.locator("#problems .problem").first).to_contain_text("CLOSED")
    assert len(site.hub.mappings.versions("jira")) == 1

    # Fixed, with a real change: Jira's "Duplicate" status is no longer read.
    editor.fill(original.replace("    Duplicate: RESOLVED\n", ""))
    expect(page.locator("#problems")).to_contain_text("Valid")
    page.fill("#comment", "Duplicate is not a resolution here")
    page.click("#save")
    expect(page).to_have_url(re.compile(r"/mapping/versions$"))
    expect(page.locator(".flash")).to_contain_text("version 2")
    expect(page.locator("#diff")).to_contain_text("-    Duplicate: RESOLVED")
    expect(page.locator("#diff .del")).to_have_count(1)  # one line changed, not every line end
    expect(page.locator("#diff .add")).to_have_count(0)
    shots.take(page, "mapping-saved-diff")

    # Preview: the incident as the edited mapping writes it to Jira; nothing is sent.
    writes_before = site.world["jira"].writes()
    page.goto(f"{site.url}/admin/connectors/jira/mapping")
    page.select_option("#incident_id", site.incident_id)
    page.click("#preview-outbound-button")
    expect(page.locator("#preview-outbound pre")).to_contain_text("Checkout API returning 502s")
    shots.take(page, "mapping-preview")
    assert site.world["jira"].writes() == writes_before

    # Roll back to the shipped version.
    page.goto(f"{site.url}/admin/connectors/jira/mapping/versions")
    page.click("button.rollback:has-text('v1')")
    expect(page.locator(".flash")).to_contain_text("now version 3")
    shots.take(page, "mapping-rolled-back")
    current = site.hub.mappings.current("jira")
    assert (current.version, current.yaml) == (3, original)


def test_a_dead_delivery_is_replayed_and_an_incident_links_to_jira(
    page: Page, site: Site, shots: Shots
) -> None:
    (dead,) = site.hub.outbox.search(state="dead")
    page.goto(f"{site.url}/admin/login?next=/admin/deliveries")
    _log_in(page, site, site.admin_key)
    row = page.locator(f"tr[data-delivery='{dead.id}']")
    expect(row).to_contain_text("HTTP 400")
    shots.take(page, "dead-delivery")

    site.receiver.default = Answer(204)  # the subscriber is fixed
    row.locator("button.replay").click()
    expect(page.locator(".flash")).to_contain_text(f"Delivery {dead.id}")
    wait_until(lambda: site.hub.outbox.get(dead.id).state == "delivered")
    page.reload()
    expect(page.locator("#no-deliveries")).to_be_visible()
    shots.take(page, "replayed")

    page.goto(f"{site.url}/admin/incidents?team=payments")
    page.click(f"tr[data-incident='{site.incident_id}'] a")
    link = page.locator("#external-links a")
    expect(link).to_have_attribute("href", re.compile(r"^https://127\.0\.0\.1:\d+/browse/"))
    expect(page.locator("#timeline")).to_contain_text("opened")
    shots.take(page, "incident")


def test_a_mapping_changed_in_the_ui_changes_what_the_next_sync_sends(
    page: Page, site: Site, shots: Shots
) -> None:
    jira = site.world["jira"]

    def created(title: str) -> dict[str, object]:
        incident = site.hub.incidents.create(IncidentDraft.model_validate({"title": title})).incident
        wait_until(lambda: site.hub.incidents.get(str(incident.id)).external_refs, timeout=20)
        (entry,) = [
            e
            for e in jira.ledger.writes()
            if e.method == "POST" and e.path.endswith("/issue") and e.body["fields"]["summary"] == title
        ]
        fields: dict[str, object] = entry.body["fields"]
        return fields

    page.goto(f"{site.url}/admin/login?next=/admin/connectors/jira/mapping")
    _log_in(page, site, site.admin_key)
    editor = page.locator("#mapping-text")
    original = editor.input_value()
    editor.fill(original + "custom_fields:\n  - {field: customfield_10043, template: '{number}: {title}'}\n")
    expect(page.locator("#problems")).to_contain_text("Valid")
    page.fill("#comment", "Impact carries the hub number")
    page.click("#save")
    expect(page.locator(".flash")).to_contain_text("version 2")
    shots.take(page, "mapping-custom-field")

    fields = created("Payments latency")
    assert str(fields["customfield_10043"]).endswith(": Payments latency")

    # Rolled back in the UI: the next issue is created as before.
    page.goto(f"{site.url}/admin/connectors/jira/mapping/versions")
    page.click("button.rollback:has-text('v1')")
    expect(page.locator(".flash")).to_contain_text("now version 3")
    assert "customfield_10043" not in created("Search latency")

"""Schema fuzzing: schemathesis drives every operation of the app's own OpenAPI document, with an admin key,
over a real server on loopback, and every answer must agree with the document.

Phases: the documented examples, coverage (boundary and just-out-of-bounds values of every parameter and
field), fuzzing (positive and negative data), and stateful sequences along the links between operations:
those the document declares (`incident_hub/api/links.py`: a created incident, subscription,
reconciliation or connector to the operations on it) and those schemathesis infers. Its stateful phase
does not start from POST /api/v1/incidents: its dependency analysis reads the body's
`automated_responses[].response_id` as a reference to a resource nothing creates; the incident operations
are still driven in the other phases, with ids taken from the run's own answers.

Checks: all of schemathesis's, among them not_a_server_error, status_code_conformance,
content_type_conformance, response_headers_conformance, response_schema_conformance,
negative_data_rejection (schema-violating input answers 4xx), missing_required_header, unsupported_method,
use_after_free and ignored_auth (the key is left out or spoiled: 401), except:

- positive_data_acceptance: it wants every schema-valid request accepted, but some refusals are right and
  cannot be said in JSON Schema: an `If-Match` naming a version that is no longer current (412, RFC 9110),
  a cursor this API never handed out, the same service given two impacts, a body `id` other than the
  path's. They answer 412 or 422 with a reason, which the other checks hold to the schema.

The run is seeded and single-worker, so it repeats. `INCIDENT_HUB_SCHEMA_EXAMPLES` sets the examples per
operation and phase (default 10: both databases in 2 min 45 s on two cores at load 3, 4 min 52 s at load
13, about 90 s of CPU); raise it for a soak.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from incident_hub.api.app import create_app
from incident_hub.api.auth import Scope
from tests.conftest import key_for, test_settings

EXAMPLES = int(os.environ.get("INCIDENT_HUB_SCHEMA_EXAMPLES", "10"))
SEED = 20261207
EXCLUDED_CHECKS = ["positive_data_acceptance"]


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The app over loopback HTTP with its lifespan running, and an admin key's headers. Failed
    authentication is not throttled: the fuzzer sends many bad keys on purpose (ignored_auth)."""
    app = create_app(test_settings(database_url, tmp_path, auth_failure_burst=1_000_000))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", key_for(app.state.hub, Scope.ADMIN)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.slow
def test_every_operation_answers_as_its_schema_says(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, headers = served
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        f"--exclude-checks={','.join(EXCLUDED_CHECKS)}",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",
        "--continue-on-failure",
        "--request-timeout=30",
        f"--report-dir={tmp_path / 'report'}",
        *(f"--header={name}: {value}" for name, value in headers.items()),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested, run.stdout[-5_000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) >= 40, "every operation is tested"

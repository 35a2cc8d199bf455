"""The vendor documents the tests read are in the repository, each named with its source in SOURCES.md, and
the trimmed specifications hold exactly the operations listed beside them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import VENDOR

ROW = re.compile(
    r"^\| `(?P<file>[^`]+)` \| (?P<bytes>\d+) \| (?P<sha>[0-9a-f]{12}) \| .+ \| .+ \|$", re.MULTILINE
)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TRIMMED = sorted(VENDOR.glob("*/*.operations.txt"))


def test_every_vendor_file_is_named_in_sources_with_its_size_and_hash() -> None:
    listed = {
        m["file"]: (int(m["bytes"]), m["sha"]) for m in ROW.finditer((VENDOR / "SOURCES.md").read_text())
    }
    present = {
        path.relative_to(VENDOR).as_posix(): (
            len(data := path.read_bytes()),
            hashlib.sha256(data).hexdigest()[:12],
        )
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "SOURCES.md" and "__pycache__" not in path.parts
    }
    assert present == listed


@pytest.mark.parametrize("operations", TRIMMED, ids=lambda p: p.name)
def test_trimmed_specification_holds_exactly_the_listed_operations(operations: Path) -> None:
    spec = next(operations.parent.glob(operations.name.removesuffix(".operations.txt") + ".*.json"))
    document = json.loads(spec.read_text())
    held = {(m, path) for path, item in document["paths"].items() for m in item if m in METHODS}
    wanted = {
        (line.split()[0], line.split()[1])
        for line in operations.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert held == wanted
    assert len(TRIMMED) == 3


def test_trim_keeps_the_named_operations_and_every_component_they_reach(tmp_path: Path) -> None:
    document = {
        "openapi": "3.0.2",
        "info": {"title": "t", "version": "1"},
        "x-narrative": "prose that is left out",
        "tags": [{"name": "Kept"}, {"name": "Dropped"}],
        "paths": {
            "/things/{id}": {
                "parameters": [{"$ref": "#/components/parameters/id"}],
                "get": {"tags": ["Kept"], "responses": {"200": {"$ref": "#/components/responses/Thing"}}},
                "delete": {"tags": ["Dropped"], "responses": {"204": {"description": "gone"}}},
            },
            "/others": {
                "get": {"tags": ["Dropped"], "responses": {"200": {"$ref": "#/components/responses/Other"}}}
            },
        },
        "components": {
            "parameters": {
                "id": {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            },
            "responses": {
                "Thing": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Thing/allOf/0"}}
                    }
                },
                "Other": {"description": "o"},
            },
            "schemas": {
                "Thing": {
                    "allOf": [{"$ref": "#/components/schemas/Base"}],
                    "discriminator": {"propertyName": "type", "mapping": {"big": "#/components/schemas/Big"}},
                },
                "Base": {"type": "object"},
                "Big": {"type": "object"},
                "Unused": {"type": "object"},
            },
            "securitySchemes": {"api_key": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        },
    }
    source, operations, output = tmp_path / "full.json", tmp_path / "ops.txt", tmp_path / "trimmed.json"
    source.write_text(json.dumps(document))
    operations.write_text("# the one operation used\nget /things/{id}\n")
    subprocess.run(
        [sys.executable, VENDOR / "trim.py", source, operations, output], check=True, capture_output=True
    )
    trimmed = json.loads(output.read_text())

    assert trimmed["paths"] == {
        "/things/{id}": {k: document["paths"]["/things/{id}"][k] for k in ("parameters", "get")}
    }
    assert {section: sorted(entries) for section, entries in trimmed["components"].items()} == {
        "parameters": ["id"],
        "responses": ["Thing"],
        "schemas": ["Base", "Big", "Thing"],
        "securitySchemes": ["api_key"],
    }
    assert trimmed["tags"] == [{"name": "Kept"}]
    assert "x-narrative" not in trimmed
    subprocess.run(
        [sys.executable, VENDOR / "trim.py", source, operations, tmp_path / "again.json"], check=True
    )
    assert (tmp_path / "again.json").read_bytes() == output.read_bytes()

"""Cut an OpenAPI 3 document down to the operations the tests use, plus everything they reference.

    python tests/vendor/trim.py FULL_SPEC.json OPERATIONS.txt OUTPUT.json

OPERATIONS.txt names one operation a line, `<method> <path template>` exactly as in the document's
`paths` (`get /incidents/{id}`); `#` starts a comment. The output keeps those operations (with their
path-level parameters), every `components` entry they reach through `$ref` or a discriminator `mapping`,
transitively, all `securitySchemes` (named by `security`, not referenced), the tags the kept operations
name, and the document's `openapi`, `info`, `servers`, `security` and `externalDocs` as they are. Other
top-level `x-` extensions (prose) are left out. The same inputs always give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEPT_TOP_LEVEL = ("openapi", "info", "servers", "security", "externalDocs")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def read_operations(text: str) -> list[tuple[str, str]]:
    operations = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            method, path = line.split(maxsplit=1)
            operations.append((method.lower(), path))
    return operations


def local_refs(node: Any) -> Iterator[str]:
    """Every `#/...` pointer a node uses: `$ref` values and discriminator mapping targets."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "mapping" and isinstance(value, dict):
                yield from (target for target in value.values() if isinstance(target, str))
            else:
                yield from local_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from local_refs(item)


def resolve(document: dict[str, Any], pointer: str) -> tuple[tuple[str, ...], Any]:
    if not pointer.startswith("#/"):
        raise SystemExit(f"only local references are supported, found {pointer!r}")
    parts = tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer[2:].split("/"))
    node: Any = document
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return parts, node


def trim(document: dict[str, Any], operations: list[tuple[str, str]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, template in operations:
        item = document["paths"].get(template)
        if item is None or method not in item:
            raise SystemExit(f"{method} {template} is not in the document")
        paths.setdefault(template, {k: v for k, v in item.items() if k not in METHODS})[method] = item[method]
    # Keep the document's order of paths and of methods within each path.
    paths = {
        template: {k: v for k, v in document["paths"][template].items() if k in paths[template]}
        for template in document["paths"]
        if template in paths
    }

    components: dict[str, dict[str, Any]] = {}
    pending = list(local_refs(paths))
    kept: set[tuple[str, str]] = set()
    while pending:
        parts, _ = resolve(document, pointer := pending.pop())
        if parts[0] != "components" or len(parts) < 3:
            raise SystemExit(f"unexpected reference {pointer!r}")
        # A pointer into an entry (`.../Tag/allOf/0`) keeps the whole entry and what it reaches.
        section, name = parts[1], parts[2]
        if (section, name) in kept:
            continue
        kept.add((section, name))
        entry = document["components"][section][name]
        components.setdefault(section, {})[name] = entry
        pending.extend(local_refs(entry))
    if "securitySchemes" in document.get("components", {}):
        components["securitySchemes"] = document["components"]["securitySchemes"]

    trimmed: dict[str, Any] = {key: document[key] for key in KEPT_TOP_LEVEL if key in document}
    used_tags = {
        tag
        for item in paths.values()
        for op in item.values()
        if isinstance(op, dict)
        for tag in op.get("tags", [])
    }
    if "tags" in document:
        trimmed["tags"] = [tag for tag in document["tags"] if tag.get("name") in used_tags]
    trimmed["paths"] = paths
    trimmed["components"] = {
        section: {name: entries[name] for name in document["components"][section] if name in entries}
        for section in document["components"]
        if (entries := components.get(section))
    }
    return trimmed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the vendor's full OpenAPI 3 document (JSON)")
    parser.add_argument("operations", type=Path, help="the operations to keep, one `<method> <path>` a line")
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    document = json.loads(args.source.read_text())
    trimmed = trim(document, read_operations(args.operations.read_text()))
    args.output.write_text(json.dumps(trimmed, indent=1, ensure_ascii=False) + "\n")
    kept = sum(len([m for m in item if m in METHODS]) for item in trimmed["paths"].values())
    schemas = sum(len(entries) for entries in trimmed["components"].values())
    print(f"{args.output}: {kept} operations, {schemas} components, {args.output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

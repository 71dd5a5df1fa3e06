#!/usr/bin/env python3
"""Extract the request-body schemas of the Docker Engine API spec into guest/api/request_schemas.json.

The engine checks request bodies against the types the spec documents (guest/api/validate.py). The guest
has no YAML parser and needs only the types, so this keeps, for every operation taking a JSON body, that
body's schema and the definitions it reaches, stripped of descriptions and examples, and the types of the query
parameters dockerd can refuse (integers, filters). Re-run after updating
docs/reference/docker-engine-api-*.yaml; tests/engine/test_validate.py checks the file is current.

    python3 scripts/gen_request_schemas.py            # writes the file
    python3 scripts/gen_request_schemas.py --check    # exits 1 when the file is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs/reference/docker-engine-api-v1.50.yaml"
OUT = REPO / "guest/api/request_schemas.json"
KEEP = {"type", "format", "properties", "additionalProperties", "items", "allOf", "$ref", "title"}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "properties":
                out[k] = {name: _strip(s) for name, s in v.items()}
            elif k in KEEP:
                out[k] = _strip(v)
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.add(v.rsplit("/", 1)[-1])
            else:
                _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    queries: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            # The query parameters dockerd can refuse: integers and JSON filters (its booleans take any value).
            typed = {p["name"]: {k: p[k] for k in ("type", "format") if k in p} for p in op.get("parameters", [])
                     if p.get("in") == "query" and (p.get("type") == "integer" or p["name"] == "filters")}
            if typed:
                queries[f"{method.upper()} {path}"] = typed
            for p in op.get("parameters", []):
                schema = p.get("schema") if p.get("in") == "body" else None
                if schema is None or schema.get("type") == "string":
                    continue  # tar archives and other binary bodies
                ops[f"{method.upper()} {path}"] = {"name": p.get("name", "body"), "schema": _strip(schema)}
    defs: dict[str, Any] = {}
    todo: set[str] = set()
    _refs(ops, todo)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        defs[name] = _strip(spec["definitions"][name])
        more: set[str] = set()
        _refs(defs[name], more)
        todo |= more - defs.keys()
    return {"api_version": spec["info"]["version"], "operations": ops, "queries": queries,
            "definitions": dict(sorted(defs.items()))}


def render(spec_path: Path = SPEC) -> str:
    spec = yaml.safe_load(spec_path.read_text())
    return json.dumps(generate(spec), indent=1, sort_keys=False) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run scripts/gen_request_schemas.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Derive ``opportunity_operations.json`` from Marketo's Swagger file (kept so the copy can be redone).

    python tests/data/marketo_spec/derive.py ../shared/specs/swagger-mapi.json

Writes the opportunity and role operations and every definition they reference, unmodified, so the
spec test needs no copy of the 1 MB source.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).with_name("opportunity_operations.json")
SOURCE = {
    "repository": "AdobeDocs/marketo-apis",
    "path": "static/swagger-mapi.json",
    "snapshot": "2026-07-31",
    "last_changed": "2026-04-29",
    "note": "opportunity and role paths unchanged since 2024-06; paths and definitions copied unmodified",
}


def derive(source: Path) -> dict[str, object]:
    raw = source.read_bytes()
    spec = json.loads(raw)
    operations = {
        path: ops for path, ops in spec["paths"].items() if path.startswith("/rest/v1/opportunities")
    }
    wanted: set[str] = set()
    todo = re.findall(r"#/definitions/(\w+)", json.dumps(operations))
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(re.findall(r"#/definitions/(\w+)", json.dumps(spec["definitions"][name])))
    return {
        "source": {**SOURCE, "swagger": spec["swagger"], "sha256": hashlib.sha256(raw).hexdigest()},
        "paths": operations,
        "definitions": {name: spec["definitions"][name] for name in sorted(wanted)},
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(derive(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")

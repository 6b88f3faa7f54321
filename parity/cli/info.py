"""Commands that describe the harness: backends (what can run here) and schema (results.json's)."""
from __future__ import annotations

import json

from ..backends import BACKENDS
from ..schema import results_schema
from .common import EXIT_PASS


def add_backends(sub) -> None:
    p = sub.add_parser("backends", help="list every backend, whether it can run here, and why not")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_backends(args) -> int:
    rows = []
    for b in BACKENDS.values():
        reason = b.availability()
        rows.append({"name": b.name, "available": reason is None, "reason": reason, "precision": b.precision,
                     "device": b.device, "description": b.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_PASS
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else r["reason"]
        print(f"{r['name']:<{width}}  {r['device']:<3}  {r['precision']}  {state}")
    return EXIT_PASS


def add_schema(sub) -> None:
    sub.add_parser("schema", help="print the JSON Schema of results.json")


def cmd_schema(args) -> int:
    print(json.dumps(results_schema(), indent=2))
    return EXIT_PASS


COMMANDS = {"backends": (add_backends, cmd_backends), "schema": (add_schema, cmd_schema)}

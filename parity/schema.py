"""The JSON Schema of ``results.json``, generated from the results dataclasses (``parity schema`` prints it).

``SCHEMA_VERSION`` in ``parity.results`` follows it; the README's "Results schema" lists every change.
Floats may be ``null``: strict JSON has no NaN or Infinity, so non-finite numbers are written as null
and their paths listed in ``nonfinite_values``.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing

from .results import SCHEMA_VERSION, RunResult

# Fields kept in memory but not written to results.json.
NOT_WRITTEN = {"RunResult": {"logits", "frames", "repro_inputs", "view_logits"}, "BackendRecord": {"pid"}}
# What write_report adds beside the dataclass fields.
WRITTEN_EXTRA = {
    "schema_version": {"type": "integer"},
    "complete": {"const": True},
    "finished": {"type": "string"},
    "nonfinite_values": {"type": "array", "items": {"type": "string"}},
    "files_sha256": {"type": "object", "additionalProperties": {"type": "string"}},
}
LATENCY = {k: {"type": ["number", "null"]} for k in ("p50_ms", "p95_ms", "mean_ms", "clips_per_s")}


def _type(hint) -> dict:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_type(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.value for m in hint]}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": ["number", "null"]}  # non-finite floats are written as null
    if hint is str:
        return {"type": "string"}
    if origin in (list, tuple) or hint in (list, tuple):
        return {"type": "array", "items": _type(args[0]) if args else {}}
    if origin is dict or hint is dict:
        return {"type": "object"}
    return {}


def dataclass_schema(cls) -> dict:
    hints = typing.get_type_hints(cls)
    skip = NOT_WRITTEN.get(cls.__name__, set())
    props = {f.name: _type(hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skip}
    return {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": cls.__name__ == "BackendRecord"}


def results_schema() -> dict:
    schema = dataclass_schema(RunResult)
    schema["properties"].update(WRITTEN_EXTRA)
    schema["required"] = sorted(schema["properties"])
    backends = schema["properties"]["backends"]["items"]
    backends["properties"].update(LATENCY)
    backends["additionalProperties"] = False
    schema["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://pptsm-parity/results.schema.v{SCHEMA_VERSION}.json",
        "title": "pptsm-parity results.json",
        **schema,
    }

"""`parity run`'s arguments, generated from RunConfig's fields (each field's ``Flag``), in argument groups."""
from __future__ import annotations

import argparse
import importlib
from dataclasses import fields

from ..config import GROUPS, RunConfig, flag_name

# Flags of `parity run` that are not settings of the run: (group, flag, argparse keywords).
EXTRA_FLAGS = (
    ("inputs", "--inputs", {"help": "saved input tensors instead of clips: a folder of .npy [1, T, 3, S, S], or a list of them with labels "
                                    "(as a repro bundle's inputs/list.txt); nothing is decoded"}),
    ("inputs", "--config", {"help": "parity.toml, or a pyproject.toml with [tool.parity]"}),
    ("tolerances", "--tol", {"action": "append", "default": [], "metavar": "SCOPE.FIELD=VALUE",
                             "help": "override a tolerance, e.g. fp16.atol=0.05 or onnxruntime.rtol=1e-3 (repeatable)"}),
    ("scale", "--threads", {"type": int, "help": "math threads of each backend (default: every core; backends take turns)"}),
    ("scale", "--shard", {"metavar": "i/N", "help": "run the i-th of N deterministic slices of the clips (1-based); join them with `parity merge`"}),
    ("output", "--write-config", {"metavar": "PARITY_TOML", "help": "write the config of exactly this run, for `pytest --parity-config`"}),
    ("output", "--absolute-paths", {"action": "store_true", "help": "--write-config with absolute paths (default: relative to the config file)"}),
    ("output", "--cache", {"help": "artifact cache folder"}),
    ("output", "--summary-md", {"metavar": "FILE", "help": "also write a short Markdown summary (e.g. \"$GITHUB_STEP_SUMMARY\")"}),
)

RUN_EPILOG = """\
exit codes:
  0    every comparison passed
  1    a comparison failed: parity is broken
  2    the harness could not run (bad arguments, missing model, no readable clip, the reference failed,
       a report folder it cannot write)
  130  interrupted (Ctrl-C: nothing is reported); 143 after a SIGTERM (a cancelled CI job), the same way

examples:
  parity run --paddle-model m/ppTSMv2.json --onnx m/ppTSMv2.onnx --clips val.txt --write-config parity.toml
  parity run --config parity.toml --backends paddle,onnxruntime-fp16 --tol fp16.atol=0.05 --report reports/fp16
"""


def _choices(spec):
    """A choice list, or ``"module:NAME"``: the list where it lives (a module config.py may not import)."""
    if isinstance(spec, str):
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)
    return spec


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Every RunConfig setting as a flag, plus EXTRA_FLAGS, in GROUPS. A flag not given is None (or []): the config wins."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in fields(RunConfig):
        flag = f.metadata.get("flag")
        if flag is None:
            continue
        kind = str(f.type).replace(" | None", "")
        kw = {"help": flag.help}
        if flag.metavar:
            kw["metavar"] = flag.metavar
        if flag.choices:
            kw["choices"] = _choices(flag.choices)
        if kind == "bool":
            kw.update(action=argparse.BooleanOptionalAction, default=None)
        elif kind.startswith("dict"):
            kw.update(action="append", default=[])
        elif kind in ("int", "float"):
            kw["type"] = int if kind == "int" else float
        groups[flag.group].add_argument(flag_name(f), **kw)
    for group, name, kw in EXTRA_FLAGS:
        groups[group].add_argument(name, **kw)

"""The gate where teams run it: the Markdown summary, the published results schema, and the CI examples."""
import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from parity.cli import main

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"
NASTY = "<img src=x onerror=alert(1)> **[click](javascript:alert(2))** `code` _x_ # h | a.mp4"


def test_summary_of_a_failing_run_renders_no_markup_from_a_clip_name(tmp_path):
    from markdown_it import MarkdownIt

    from fixtures.reports import big_result
    from parity import summary

    result = big_result(tmp_path, clips=30, classes=8)
    failing = next(c for c in result.comparisons if c.failed_clips)
    failing.failed_clips[0] = str(tmp_path / NASTY)
    result.clips[0].status, result.clips[0].error = "error", f"{NASTY}: cannot decode"
    result.first_failing_hop = {"from": "paddle", "to": "onnxruntime", "max_abs": 0.3, "top1_agreement": 0.9}
    text = summary.render(result, tmp_path / "r" / "index.html", tmp_path)
    rendered = MarkdownIt("commonmark").render(text)
    assert "<img" not in rendered and "javascript:" not in re.sub(r"&[a-z]+;|\\", "", "".join(re.findall(r'href="([^"]*)"', rendered)))
    assert "<strong>[click]" not in rendered and "<code>code</code>" not in rendered and "<em>x</em>" not in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered  # shown, as text
    assert "| backend | status |" in text and "**First failing hop:** paddle → onnxruntime" in text
    assert '<a href="r/index.html">' in rendered


def _schema():
    from parity.schema import results_schema

    return results_schema()


def test_parity_schema_prints_the_published_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == _schema() and printed["properties"]["schema_version"]["const"] >= 2
    shipped = json.loads((ROOT / "parity" / "results.schema.json").read_text())
    assert shipped == printed, "parity/results.schema.json is stale: regenerate it with `parity schema > parity/results.schema.json`"


@pytest.mark.slow
def test_results_validate_and_a_removed_field_does_not(clean_run, tmp_path):
    import jsonschema

    from parity.report import write_report

    write_report(clean_run, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(data, _schema())
    for key in ("verdict", "comparisons", "complete"):
        broken = copy.deepcopy(data)
        broken.pop(key)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, _schema())
    broken = copy.deepcopy(data)
    broken["comparisons"][0].pop("max_abs")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema())


# What CI fills in when the job runs: the matrix's or the parallel job's shard.
CI_VARIABLES = {"${{ matrix.shard }}": "1", "${CI_NODE_INDEX}": "1", "${CI_NODE_TOTAL}": "4"}


def _commands() -> list[list[str]]:
    """Every parity / pytest command line of the CI examples, as arguments."""
    import yaml

    found = []
    for path in sorted(CI.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for job in list(doc.values()) + list((doc.get("jobs") or {}).values()):
            if not isinstance(job, dict):
                continue
            scripts = job.get("script", []) + [s.get("run", "") for s in job.get("steps", []) if isinstance(s, dict)]
            for script in scripts:
                for line in script.splitlines() if "\n" in script.strip() else [script]:
                    line = line.split("||")[0].strip()
                    line = line.replace(".nox/gpu/bin/parity", "parity")
                    for variable, value in CI_VARIABLES.items():
                        line = line.replace(variable, value)
                    if line.startswith(("parity ", "pytest ")):
                        found.append(shlex.split(line))
    return found


def _backend_names(value) -> list[str]:
    return [b.strip() for b in value.split(",") if b.strip()] if isinstance(value, str) else list(value or [])


def test_every_ci_example_command_parses_with_real_flags_and_backends():
    """Each `parity` line goes through the real argument parser; its backend names, shard and config file are checked as a run checks them."""
    from parity.backends import BACKENDS
    from parity.cli import build_parser
    from parity.config import load_config_file
    from parity.run import parse_shard

    commands = _commands()
    assert {c[0] for c in commands} == {"parity", "pytest"} and len(commands) >= 6
    parser, pytest_help = build_parser(), None
    for argv in commands:
        line = " ".join(argv)
        if argv[0] == "pytest":  # the plugin's options: pytest's own parser is only reachable through --help
            if pytest_help is None:
                text = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=ROOT).stdout
                pytest_help = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))  # whole option names, not substrings
            missing = [f for f in (a.split("=")[0] for a in argv if a.startswith("--")) if f not in pytest_help]
            assert not missing, f"{line}: {missing} not options of pytest with the parity plugin"
            continue
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{line}: refused by parity's argument parser (its message is above)")
        for flag in ("backends", "require"):
            unknown = [b for b in _backend_names(getattr(args, flag, None)) if b not in BACKENDS and b != "all"]
            assert not unknown, f"{line}: --{flag} names {unknown}, not backends (known: {', '.join(BACKENDS)})"
        if getattr(args, "shard", None) is not None:
            parse_shard(args.shard)  # a one-line error for what is not i/N
    cfg = load_config_file(CI / "parity.toml")  # the real reader: unknown keys and wrong types are errors
    for flag in ("backends", "require"):
        unknown = [b for b in _backend_names(getattr(cfg, flag)) if b not in BACKENDS]
        assert not unknown, f"examples/ci/parity.toml: {flag} names {unknown}, not backends"


def test_ci_examples_pass_the_linters():
    yamllint = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-c", str(ROOT / ".yamllint.yaml"), str(CI)], capture_output=True,
                              text=True)
    assert yamllint.returncode == 0, yamllint.stdout
    for schema, files in (("vendor.github-workflows", sorted((CI / "github").glob("*.yml"))), ("vendor.gitlab-ci", [CI / "gitlab" / ".gitlab-ci.yml"])):
        proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr

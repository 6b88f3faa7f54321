import json
import re

import numpy as np
import pytest

from fixtures.reports import big_result
from parity.compare import compare_logits
from parity.config import default_tolerances
from parity.report import write_report
from parity.results import BackendRecord, ClipRecord, RunResult

XSS = "<script>alert(1)</script>.mp4"


def _result(tmp_path, broken=False):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 4)).astype(np.float32)
    out = ref.copy()
    if broken:
        out[1] += 1.0
    paths = [str(tmp_path / XSS), str(tmp_path / "b.mp4"), str(tmp_path / "c.avi")]
    comp = compare_logits("onnxruntime", "paddle", "fp32", paths, [0, 1, 2], ref, out, default_tolerances()["fp32"])
    return RunResult(
        verdict="pass" if comp.passed else "fail",
        reference="paddle",
        backends=[
            BackendRecord("paddle", "fp32", "Paddle Inference, CPU", "ok", latency_ms=[5.0, 6.0]),
            BackendRecord("onnxruntime", "fp32", "ONNX Runtime", "ok", latency_ms=[2.0, 3.0]),
            BackendRecord("tensorrt-fp16", "fp16", "TensorRT", "unavailable", "unavailable: tensorrt not importable"),
        ],
        comparisons=[comp],
        clips=[ClipRecord(p, i, "ok") for i, p in enumerate(paths)] + [ClipRecord("<b>bad</b>.mp4", 0, "error", "<b>bad</b>.mp4: cannot decode")],
        artifacts={"clips": "list.txt", "paddle_model": "m.json", "onnx": "m.onnx"},
        tolerances={},
        preprocess={"num_seg": 8, "short_size": 256, "target_size": 224, "variant": "paddlevideo"},
        environment={"python": "3"},
        label_names={0: "<i>left</i>"},
    )


def test_html_sections_and_verdict(tmp_path):
    html = write_report(_result(tmp_path, broken=True), tmp_path).read_text()
    for section in ('id="verdict"', 'id="backends"', 'id="matrix"', 'id="tolerances"', 'id="clips"', 'id="latency"', 'id="environment"'):
        assert section in html
    assert "Verdict: <strong>FAIL</strong>" in html
    assert "unavailable: tensorrt not importable" in html
    assert "data:image/png;base64," in html  # plots are embedded; nothing is fetched
    assert "http://" not in html and "https://" not in html


def test_user_text_is_escaped(tmp_path):
    html = write_report(_result(tmp_path), tmp_path).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp4" in html
    assert "<b>bad</b>" not in html and "<i>left</i>" not in html


def test_worst_clip_first(tmp_path):
    write_report(_result(tmp_path, broken=True), tmp_path)
    import pandas as pd

    table = pd.read_csv(tmp_path / "clips.csv")
    assert table.iloc[0]["status"] == "ERROR"
    assert table.iloc[1]["status"] == "FAIL" and table.iloc[1]["clip"].endswith("b.mp4")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["backends"][2]["status"] == "unavailable"


def test_a_release_set_report_stays_small_and_keeps_every_row_in_the_tables(tmp_path):
    import pandas as pd

    result = big_result(tmp_path)
    flagged = sum(1 for c in result.comparisons for cc in c.clips if not cc.passed or not cc.top1_agrees)
    assert flagged > 200  # more than the HTML shows
    html = write_report(result, tmp_path / "report")
    assert html.stat().st_size < 5 * 1024 * 1024
    text = html.read_text()
    assert f"{flagged - 200} more failing or flipped rows are not shown" in text
    assert len(pd.read_parquet(tmp_path / "report" / "clips.parquet")) == 4 * 4000
    assert len(pd.read_csv(tmp_path / "report" / "clips.csv")) == 4 * 4000


def _markdown(text):
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def _tables(text) -> list[list[list[str]]]:
    """Every table of the rendered Markdown, as rows of cell texts (header row first)."""
    import html as html_lib
    import re

    rendered = _markdown(text).render(text)
    tables = []
    for table in re.findall(r"<table>(.*?)</table>", rendered, re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
        tables.append([[html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
                       for row in rows])
    return tables


def _failing_big(tmp_path):
    result = big_result(tmp_path, clips=30, classes=8)
    result.artifacts = {"paddle_model": str(tmp_path / "pptsm_k400.json"), "onnx": str(tmp_path / "pptsm_k400.onnx"),
                        "paddle_params_sha256": "0cd2bf35" + "a" * 56, "onnx_sha256": "efb5f3f9" + "b" * 56}
    result.label_names = {i: f"class{i}" for i in range(8)}
    return result


def test_the_summary_of_a_failing_run_shows_the_conclusion_the_failed_metric_and_the_worst_clips_with_numbers(tmp_path):
    import re

    from parity import summary
    from parity.conclusion import lines

    result = _failing_big(tmp_path)
    text = summary.render(result, tmp_path / "r" / "index.html", tmp_path)
    rendered = _markdown(text).render(text)
    items = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", rendered, re.S)]
    import html as html_lib

    assert [html_lib.unescape(i) for i in items[: len(lines(result))]] == lines(result)  # the conclusion, first, in its words
    assert "0cd2bf35" in items[0] and "efb5f3f9" in items[0] and "pptsm_k400" in items[0]  # the model and its short hashes
    tables = {t[0][1] if t[0][0] == "backend" else t[0][0]: t for t in _tables(text)}
    metrics = tables["vs"]
    failing = next(c for c in result.comparisons if not c.passed)
    assert metrics[0] == ["backend", "vs", "metric", "value", "tolerance"]
    assert [failing.backend, "paddle", "atol needed (with rtol 0.02)", f"{failing.min_passing_atol:.3g}",
            f"atol {failing.tolerance['atol']:g}"] in metrics
    worst = tables["clip"]
    assert worst[0] == ["backend", "clip", "max abs", "top-1 reference → backend", "reference margin", "result"]
    assert len(worst) == 1 + 10
    expected = sorted(failing.clips, key=lambda c: (c.passed, -c.max_abs))[:10]  # failing clips first, largest error first
    assert not any(c.passed for c in expected)
    for row, clip in zip(worst[1:], expected):
        assert row[1] == clip.path.rsplit("/", 1)[-1] and float(row[2]) == float(f"{clip.max_abs:.3g}")
        assert row[3] == f"{clip.top1_reference} (class{clip.top1_reference}) → {clip.top1_backend} (class{clip.top1_backend})"
        assert float(row[4]) == float(f"{clip.margin:.3g}") and row[5] == "FAIL"


def test_the_summary_links_the_report_in_the_ci_runs_artifacts(tmp_path, monkeypatch):
    from parity import summary

    result = _failing_big(tmp_path)
    for key in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "CI_JOB_URL"):
        monkeypatch.delenv(key, raising=False)

    def link():
        text = summary.render(result, tmp_path / "reports" / "run 1" / "index.html", tmp_path)
        import re

        return re.findall(r'<a href="([^"]*)">([^<]*)</a>', _markdown(text).render(text))[-1]

    assert link() == ("reports/run%201/index.html", "reports/run 1/index.html")  # relative, outside CI
    monkeypatch.setenv("CI_JOB_URL", "https://gitlab.example.com/team/model/-/jobs/42")
    assert link()[0] == "https://gitlab.example.com/team/model/-/jobs/42/artifacts/browse"
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/model")
    monkeypatch.setenv("GITHUB_RUN_ID", "123456")
    href, text = link()
    assert href == "https://github.com/team/model/actions/runs/123456" and "reports/run 1/index.html" in text


def _labelled(tmp_path, classes=3, clips=9, flips=((4, 2),)):
    """clips with labels 0..classes-1 in turn; the reference is always right, the backend flips the given clips."""
    labels = [i % classes for i in range(clips)]
    ref = np.full((clips, classes), -1.0, np.float32)
    ref[np.arange(clips), labels] = 3.0
    out = ref.copy()
    for clip, to in flips:
        out[clip, to] = 5.0
    paths = [str(tmp_path / f"c{i}.mp4") for i in range(clips)]
    comp = compare_logits("onnxruntime", "paddle", "fp32", paths, labels, ref, out, default_tolerances()["fp32"])
    return RunResult(
        verdict="fail", reference="paddle",
        backends=[BackendRecord("paddle", "fp32", "Paddle", "ok"), BackendRecord("onnxruntime", "fp32", "ORT", "ok")],
        comparisons=[comp], clips=[ClipRecord(p, lab, "ok", index=i) for i, (p, lab) in enumerate(zip(paths, labels))],
        artifacts={}, tolerances={}, preprocess={"num_seg": 8, "short_size": 128, "target_size": 112, "variant": "paddlevideo"},
        environment={}, label_names={i: f"k{i}" for i in range(classes)}, logits={"clips": np.array(paths), "paddle": ref, "onnxruntime": out},
    )


def test_per_class_accuracy_against_the_reference_and_the_class_pairs_of_flips(tmp_path):
    from parity.classes import per_class

    data = per_class(_labelled(tmp_path))  # clip 4 (label 1) goes to class 2
    assert json.loads(json.dumps(data)) == data  # plain JSON, for results.json
    assert data["classes"] == [0, 1, 2] and data["clips"] == [3, 3, 3] and data["reference_accuracy"] == [1.0, 1.0, 1.0]
    (ort,) = data["backends"]
    assert ort["backend"] == "onnxruntime" and ort["accuracy"] == [1.0, 2 / 3, 1.0]
    assert ort["delta"] == [0.0, 2 / 3 - 1.0, 0.0]
    assert ort["flips"] == [{"reference_class": 1, "backend_class": 2, "clips": 1}]
    assert ort["confusion"] == [[3, 0, 0], [0, 2, 1], [0, 0, 3]] and ort["reference_confusion"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    unlabelled = _labelled(tmp_path)
    for c in unlabelled.clips:
        c.label = None
    assert per_class(unlabelled) is None


def test_the_report_shows_a_confusion_picture_up_to_50_classes_and_the_worst_classes_beyond(tmp_path):
    import re

    html = write_report(_labelled(tmp_path), tmp_path / "small").read_text()
    assert 'id="per-class"' in html and html.count('alt="confusion matrix of onnxruntime"') == 1
    table = html[html.index('id="per-class-table"'):html.index("</table>", html.index('id="per-class-table"'))]
    assert table.count("<tr") == 1 + 3 and "-0.333" in table  # every class, with its change
    assert re.search(r"<td>k1</td><td>k2</td><td class=\"num\">1</td>", html)  # the flip's class pair, by name
    big = big_result(tmp_path, clips=400, classes=101)
    html = write_report(big, tmp_path / "big").read_text()
    assert 'alt="confusion matrix' not in html and "classes whose accuracy dropped most" in html
    table = html[html.index('id="per-class-table"'):html.index("</table>", html.index('id="per-class-table"'))]
    assert table.count("<tr") == 1 + 15


# Smaller traps of issue 22: what `parity advise`, `parity tolerances` and `localize` tell the user.


def _undefined_names(source: str) -> set[str]:
    """Names a Python file loads that it never imports or defines (nor are builtins, nor a function's arguments)."""
    import ast
    import builtins

    tree = ast.parse(source)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
            if isinstance(node, ast.FunctionDef):
                defined |= {a.arg for a in node.args.args}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - defined


def test_advise_on_a_clean_model_prints_plain_builds_and_a_paddle_snippet_that_imports_what_it_uses(demo_artifacts, tmp_path, capsys):
    import subprocess
    import sys

    from parity.cli import main

    out = tmp_path / "advice"
    code = main(["advise", "--precision", "fp16", "--onnx", str(demo_artifacts.onnx), "--clips", str(demo_artifacts.val_list),
                 "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--out", str(out), "--json"])
    advice = json.loads(capsys.readouterr().out)
    assert code == 0 and advice["keep_fp32"] == [] and advice["before"]["passed"]  # the clean model passes at FP16 as it is
    commands = (out / "tensorrt_layer_precisions.txt").read_text()
    for text in (commands, advice["settings"]["tensorrt"]["polygraphy"], advice["settings"]["tensorrt"]["trtexec"]):
        assert "--layer-precisions" not in text and "--layerPrecisions" not in text and "--precision-constraints" not in text
    assert "nothing to keep in FP32" in commands and "trtexec --onnx=model.onnx --fp16" in commands
    snippet = (out / "paddle_inference.py").read_text()
    assert "PlaceType.GPU" in snippet and _undefined_names(snippet) == set()
    # and it imports: the names are Paddle Inference's own
    run = subprocess.run([sys.executable, "-c", snippet + "\nprint(PlaceType.GPU, PrecisionType.Half, BLACK_LIST)"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_advise_snippet_names_every_name_it_uses_with_a_black_list():
    from parity.precision.advise import Advice, _finish, paddle_inference_snippet

    advice = _finish(Advice("fp16", ["Conv.3"], {"passed": False}, {"passed": True}, 3), None, None)
    advice.settings["paddle_inference"]["convert_to_mixed_precision_black_list"] = ["depthwise_conv2d"]
    snippet = paddle_inference_snippet(advice)
    assert "BLACK_LIST = {'depthwise_conv2d'}" in snippet and _undefined_names(snippet) == set()
    assert advice.settings["tensorrt"]["trtexec"].endswith("--layerPrecisions=Conv.3:fp32 --saveEngine=model.engine")
    int8 = _finish(Advice("int8", [], {"passed": True}, {"passed": True}, 1), None, None)
    assert "--int8" in int8.settings["tensorrt"]["trtexec"] and "--layer" not in int8.settings["tensorrt"]["trtexec"]
    assert "def convert(" not in paddle_inference_snippet(int8) and _undefined_names(paddle_inference_snippet(int8)) == set()


def test_tolerances_say_when_a_measured_one_is_looser_than_the_default_and_that_int8_is_class_only(tmp_path, monkeypatch):
    """`parity tolerances` on a conversion whose FP16 noise floor x10 is above the shipped FP16 tolerance."""
    from types import SimpleNamespace

    import tomllib

    import parity.run
    from parity.precision import tolerances

    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, (24, 8))
    outputs = {"paddle": ref, "onnxruntime": ref + 1e-7, "openvino": ref - 1e-7, "onnxruntime-fp16": ref + rng.normal(0, 0.01, ref.shape),
               "onnxruntime-int8": ref + rng.normal(0, 0.3, ref.shape)}

    def fake_run(cfg, cache=None, pv=None):  # the two runs measure() makes: every backend, then the reference again
        return SimpleNamespace(reference="paddle", comparisons=[], logits={k: outputs[k] for k in cfg.backends})

    monkeypatch.setattr(parity.run, "run", fake_run)
    model = SimpleNamespace(model_file=tmp_path / "m.json")
    proposal = tolerances.measure(model, tmp_path / "m.onnx", str(tmp_path / "list.txt"), cache=None, calibration=str(tmp_path / "list.txt"))
    fp16 = next(line for line in proposal.lines if line.startswith("fp16: the measured tolerance is LOOSER than the default"))
    assert f"atol {proposal.tolerances['fp16']['atol']:.3g} (default 0.05)" in fp16
    assert not any(line.startswith("fp32: the measured tolerance is LOOSER") for line in proposal.lines)
    int8 = next(line for line in proposal.lines if line.startswith("int8:"))
    assert "judged on classes only" in int8 and "switch the per-logit check off on purpose" in int8
    text = proposal.config_text
    assert "# fp16: the measured tolerance is LOOSER" in text.split("[tolerance.fp16]")[0].splitlines()[-1]
    assert "judged on classes only" in text.split("[tolerance.int8]")[0].splitlines()[-1]  # beside atol = 1000000.0, not silent
    tomllib.loads(text)  # still a config file
    # without calibration INT8 is not measured, and the defaults written are still said to be class-only
    proposal = tolerances.measure(model, tmp_path / "m.onnx", str(tmp_path / "list.txt"), cache=None)
    assert any(line.startswith("int8 not measured") and "classes only" in line for line in proposal.lines)
    assert "judged on classes only" in proposal.config_text.split("[tolerance.int8]")[0].splitlines()[-1]


def test_localize_names_the_tensors_it_could_not_match(demo_artifacts):
    """The demo conversion has one tensor named after a Paddle op that is not compared (the repaired Squeeze):
    "N tensors matched of N+1" names it, and why."""
    from parity.diagnose.localize import localize
    from parity.preprocess import PreprocessConfig, load_clip_tensor

    clip = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    d = localize(demo_artifacts.paddle_model, demo_artifacts.onnx, load_clip_tensor(clip, PreprocessConfig.for_size(8, 112)))
    matched, of = (int(n) for n in re.match(r"(\d+) tensors matched of (\d+)", d.note).groups())
    assert of - matched == len(d.unmatched) >= 1
    compared = {p["tensor"] for p in d.curve}
    for u in d.unmatched:
        assert u["tensor"] not in compared and u["why"]
        assert f"{u['onnx_node']} ({u['onnx_op']}" in d.note
    assert "not compared: " in d.note


def _header_lines(html: str) -> list[str]:
    """The report header's conclusion lines, as text."""
    import html as html_lib

    header = html[html.index('<header id="conclusion">'):html.index("</header>")]
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", m)).strip()
            for m in re.findall(r'class="[^"]*conclusion-line[^"]*"[^>]*>(.*?)</(?:p|div)>', header, re.S)]


def _summary_lines(text: str, count: int) -> list[str]:
    """The first ``count`` list items of the Markdown summary, rendered, as text."""
    import html as html_lib

    rendered = _markdown(text).render(text)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", li)).strip() for li in re.findall(r"<li>(.*?)</li>", rendered, re.S)][:count]


def _lint_onnx(demo_artifacts, tmp_path):
    import onnx

    model = onnx.load(str(demo_artifacts.onnx))
    node = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    next(a for a in node.attribute if a.name == "epsilon").f = 1.1e-5  # numerically harmless, still not what was exported
    onnx.save(model, str(tmp_path / "lint.onnx"))
    return {"onnx": str(tmp_path / "lint.onnx"), "backends": ["paddle", "onnxruntime"], "lint": "error"}


def _conv_onnx(demo_artifacts, tmp_path):
    from fixtures.defects import scale_conv_weight

    scale_conv_weight(demo_artifacts.onnx, tmp_path / "conv.onnx", 1.05, 3)
    return {"onnx": str(tmp_path / "conv.onnx"), "backends": ["paddle", "onnxruntime"], "localize": True}


def _cpp_deploy(demo_artifacts, tmp_path):
    import sys
    from pathlib import Path

    program = Path(__file__).resolve().parent.parent / "fixtures" / "programs" / "cpp_like_deploy.py"
    deploy = f"{sys.executable} {program} {demo_artifacts.onnx} {{video}} {{out}} --num-seg 8 --short 128 --size 112"
    return {"backends": ["paddle", "onnxruntime"], "external": {"deploy": deploy}, "preprocess": "paddlevideo,cpp"}


@pytest.mark.slow
@pytest.mark.parametrize("case, why", [
    (_conv_onnx, "why: onnxruntime: diverges first at ONNX node "),
    (_cpp_deploy, "why: deploy: explained by preprocessing: deploy agrees with paddle[cpp]"),
    (_lint_onnx, "why: lint finding normalization-epsilon at "),
], ids=["localized-conv", "preprocessing-explained-external", "lint-finding"])
def test_the_header_and_the_summary_carry_the_terminals_conclusion(demo_artifacts, demo_run_config, parity_cache, tmp_path, case, why):
    import dataclasses

    from parity import summary
    from parity.conclusion import lines
    from parity.run import run

    cfg = dataclasses.replace(demo_run_config, report=str(tmp_path / "r"), **case(demo_artifacts, tmp_path))
    result = run(cfg, cache=parity_cache)
    expected = lines(result)  # what the terminal prints first
    assert result.verdict == "fail" and any(line.startswith(why) for line in expected), expected
    assert _header_lines(write_report(result, cfg.report).read_text()) == expected
    assert _summary_lines(summary.render(result), len(expected)) == expected

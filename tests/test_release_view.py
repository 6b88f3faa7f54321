"""Release over release: this run against the previous release's saved report or golden outputs, and
`parity compare-releases` over saved reports (parity/baseline.py)."""
import dataclasses
import re

import numpy as np
import pytest

from parity import baseline, summary
from parity.compare import compare_logits
from parity.config import default_tolerances
from parity.report import write_report
from parity.results import BackendRecord, ClipRecord, RunResult


def _release(tmp_path, noise: float, onnx_hash: str, flip: bool = False) -> RunResult:
    """A release: 40 labelled clips, onnxruntime-fp16 at ``noise`` from the reference (and one clip flipped)."""
    rng = np.random.default_rng(0)
    labels = [i % 4 for i in range(40)]
    ref = rng.normal(0, 1, (40, 4)).astype(np.float32)
    ref[np.arange(40), labels] += 4.0
    out = ref + np.float32(noise) * np.sign(rng.normal(size=ref.shape)).astype(np.float32)
    if flip:
        out[5, (labels[5] + 1) % 4] = ref[5].max() + 0.5
    paths = [str(tmp_path / "clips" / f"c{i:02d}.mp4") for i in range(40)]
    comp = compare_logits("onnxruntime-fp16", "paddle", "fp16", paths, labels, ref, out, default_tolerances()["fp16"])
    return RunResult(
        verdict="pass" if comp.passed else "fail", reference="paddle",
        backends=[BackendRecord("paddle", "fp32", "Paddle", "ok"), BackendRecord("onnxruntime-fp16", "fp16", "ORT", "ok")],
        comparisons=[comp], clips=[ClipRecord(p, lab, "ok", sha256=f"{i:064x}", index=i) for i, (p, lab) in enumerate(zip(paths, labels))],
        artifacts={"onnx": str(tmp_path / "pptsm.onnx"), "onnx_sha256": onnx_hash * 8}, tolerances={},
        preprocess={"num_seg": 8, "short_size": 128, "target_size": 112, "variant": "paddlevideo"}, environment={},
        logits={"clips": np.array(paths), "paddle": ref, "onnxruntime-fp16": out},
    )


def test_a_margin_that_grew_past_the_threshold_is_a_warning_not_a_failure(tmp_path):
    before = _release(tmp_path / "1", 0.004, "aaaaaaaa")
    write_report(before, tmp_path / "release-1")
    now = _release(tmp_path / "2", 0.02, "bbbbbbbb")  # 5x the error, still inside atol 0.05
    assert now.verdict == "pass"
    trend = baseline.compare(now, tmp_path / "release-1")
    (fp16,) = trend["backends"]
    m = fp16["tolerance_margin"]
    assert m["previous"] == pytest.approx(before.comparisons[0].tolerance_margin) and m["current"] == pytest.approx(now.comparisons[0].tolerance_margin)
    assert fp16["margin_growth"] > baseline.MARGIN_GROWTH and m["current"] < 1
    assert trend["warnings"] == [fp16["warning"]] and "grew x" in fp16["warning"]
    assert now.verdict == "pass"  # the warning is not a failure
    assert trend["previous_model"] == "pptsm (onnx aaaaaaaa)" and trend["model"] == "pptsm (onnx bbbbbbbb)"
    # an unchanged release does not warn, and margins under the floor never do
    assert baseline.compare(_release(tmp_path / "3", 0.004, "cccccccc"), tmp_path / "release-1")["warnings"] == []
    tiny = _release(tmp_path / "4", 0.0004, "dddddddd")
    write_report(tiny, tmp_path / "tiny")
    assert baseline.compare(_release(tmp_path / "5", 0.0015, "eeeeeeee"), tmp_path / "tiny")["warnings"] == []


def test_per_class_accuracy_against_the_previous_release(tmp_path):
    write_report(_release(tmp_path / "1", 0.004, "aaaaaaaa"), tmp_path / "release-1")
    now = _release(tmp_path / "2", 0.004, "bbbbbbbb", flip=True)  # clip 5 (class 1) goes to class 2
    trend = baseline.compare(now, tmp_path / "release-1")
    (fp16,) = trend["backends"]
    assert fp16["per_class"] == [{"class": 1, "previous": 1.0, "current": 0.9, "change": pytest.approx(-0.1)}]
    assert fp16["top1_agreement"]["change"] == pytest.approx(-1 / 40) and fp16["accuracy"]["change"] == pytest.approx(-1 / 40)
    assert trend["reference"]["max_abs"] == 0 and trend["reference"]["clips"] == 40  # the same reference, matched by sha256


@pytest.mark.slow
def test_baseline_on_two_demo_releases_shows_the_margin_change(clean_run, demo_artifacts, demo_run_config, parity_cache, tmp_path):
    """Release 1: the clean demo conversion. Release 2: its first conv weight x1.001. Against the saved report of
    release 1 and against golden outputs saved from it: the margin change, in the report's trend section, the
    summary's line and compare-releases."""
    from fixtures.defects import scale_conv_weight
    from parity import golden
    from parity.run import run

    write_report(clean_run, tmp_path / "release-1")
    bad = tmp_path / "pptsm_v2.onnx"
    scale_conv_weight(demo_artifacts.onnx, bad, 1.001)
    second = run(dataclasses.replace(demo_run_config, onnx=str(bad), report=str(tmp_path / "release-2")), cache=parity_cache)
    verdict = second.verdict
    trend = baseline.compare(second, tmp_path / "release-1")
    assert second.verdict == verdict  # compare() judges nothing
    rows = {b["backend"]: b for b in trend["backends"]}
    ort = rows["onnxruntime"]["tolerance_margin"]
    clean = next(c for c in clean_run.comparisons if c.backend == "onnxruntime")
    now = next(c for c in second.comparisons if c.backend == "onnxruntime")
    assert ort == {"previous": clean.tolerance_margin, "current": now.tolerance_margin, "change": now.tolerance_margin - clean.tolerance_margin}
    assert ort["current"] > 10 * max(ort["previous"], baseline.MARGIN_FLOOR)  # x1.001 on a conv moves FP32 far past its noise
    assert any(w.startswith("onnxruntime:") for w in trend["warnings"])
    assert trend["previous_model"] != trend["model"] and trend["previous_model"].split(" (")[0] == "pptsm_v2"
    assert trend["reference"]["max_abs"] == 0 and trend["reference"]["top1_agreement"] == 1  # the Paddle model did not change

    second.baseline = trend
    html = write_report(second, tmp_path / "release-2").read_text()
    section = html[html.index('id="trend"'):html.index("</table>", html.index('id="trend-table"'))]
    assert "Warning:" in section and trend["previous_model"] in section
    assert re.search(r"<td>onnxruntime</td><td>tolerance margin</td>\s*<td class=\"num\">[^<]+</td><td class=\"num\">[^<]+</td>\s*<td class=\"num\">\+", section)
    text = summary.render(second)
    line = next(li for li in text.splitlines() if li.startswith("**Against the previous release**"))
    assert f"onnxruntime margin {ort['previous']:.3g} → {ort['current']:.3g} ⚠️" in line and "not a failure" in line

    # from golden outputs: the reference's drift only, matched by the clips' sha256
    golden.save(tmp_path / "release-1", tmp_path / "golden-1")
    from_golden = baseline.compare(second, tmp_path / "golden-1")
    assert from_golden["kind"] == "golden" and from_golden["reference"]["clips"] == len(second.clips)
    assert from_golden["reference"]["max_abs"] == 0 and all(b["tolerance_margin"]["previous"] is None for b in from_golden["backends"])

    table = baseline.compare_releases([tmp_path / "release-1", tmp_path / "release-2"])
    row = next(li for li in table.splitlines() if li.startswith("onnxruntime ") and "tolerance margin" in li)
    assert f"{ort['previous']:.3g}" in row and f"{ort['current']:.3g}" in row and f"+{ort['change']:.3g}" in row
    assert "warning (not a failure): onnxruntime: tolerance margin" in table


def test_compare_releases_over_saved_reports(tmp_path):
    from parity.errors import HarnessError

    for i, noise in enumerate((0.004, 0.005, 0.02)):
        write_report(_release(tmp_path / str(i), noise, f"{i + 1}" * 8), tmp_path / f"release-{i + 1}")
    table = baseline.compare_releases([tmp_path / f"release-{i}" for i in (1, 2, 3)])
    assert "1: pptsm (onnx 11111111)  [pass]" in table and "3: pptsm (onnx 33333333)  [pass]" in table
    row = next(line.split() for line in table.splitlines() if line.startswith("onnxruntime-fp16") and "margin" in line)
    assert len(row) == 1 + 2 + 3 + 1 and row[-1].startswith("+")  # backend, "tolerance margin", three releases, the change
    warnings = [line for line in table.splitlines() if line.startswith("warning (not a failure)")]
    assert len(warnings) == 1 and "from release 2 to 3" in warnings[0]  # 0.1 -> 0.4, not 0.08 -> 0.1
    with pytest.raises(HarnessError, match="two or more"):
        baseline.compare_releases([tmp_path / "release-1"])
    with pytest.raises(HarnessError, match="not a report folder"):
        baseline.compare_releases([tmp_path / "release-1", tmp_path / "nothing"])

import json

import numpy as np

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

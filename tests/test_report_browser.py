"""The HTML report as a person sees it: rendered by headless Chromium (Debian's chromium)."""
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from parity.report import write_report
from parity.run import run

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "reports" / "test-artifacts"
XSS = "<script>alert(1)</script>.mp4"


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("PARITY_REQUIRE_BROWSER"):  # CI: a browser test must never pass by skipping
        pytest.fail("chromium not installed, and PARITY_REQUIRE_BROWSER is set")
    pytest.skip("chromium not installed (Debian: apt-get install chromium); .ci/run installs it")


def _chrome(html: Path, *args, tmp_path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chrome-profile'}"]
    return subprocess.run([_chromium(), *flags, *args, html.as_uri()], capture_output=True, text=True, timeout=120)


def _render(html: Path, tmp_path, shot: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _chrome(html, "--window-size=1280,4000", f"--screenshot={ARTIFACTS / shot}", tmp_path=tmp_path)
    assert (ARTIFACTS / shot).stat().st_size > 10_000
    dom = _chrome(html, "--dump-dom", tmp_path=tmp_path).stdout
    assert "</html>" in dom
    return dom


def test_clean_report_renders_every_section(clean_run, tmp_path):
    html = write_report(clean_run, tmp_path / "report")
    dom = _render(html, tmp_path, "report-clean.png")
    for section in ("verdict", "backends", "matrix", "errors", "flips", "flagged", "tolerances", "clips", "latency", "artifacts", "environment"):
        assert f'id="{section}"' in dom
    assert re.search(r'id="verdict"[^>]*>\s*Verdict: <strong>PASS</strong>', dom)
    assert dom.count('alt="error histogram and scatter for') == 2
    assert "No clip failed or flipped." in dom


def test_perturbed_report_shows_failing_clips_with_thumbnails(demo_run_config, parity_cache, defective_onnx, tmp_path):
    cfg = dataclasses.replace(demo_run_config, onnx=str(defective_onnx("conv_weight_x1.05")), report=str(tmp_path / "report"))
    result = run(cfg, cache=parity_cache)
    dom = _render(write_report(result, cfg.report), tmp_path, "report-perturbed.png")
    assert "Verdict: <strong>FAIL</strong>" in dom
    assert dom.count('class="flagged-clip"') >= 1
    thumbs = re.findall(r'<img class="thumbs" alt="sampled frames of ([^"]+)" src="data:image/jpeg;base64,', dom)
    failing = {p for c in result.comparisons for p in c.failed_clips}
    assert thumbs and set(thumbs) <= failing
    assert "onnxruntime top-5" in dom


def test_user_supplied_names_render_as_text(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    # a clip whose path spells <script>alert(1)</script>.mp4 (the "/" makes "<script>alert(1)<" a folder)
    src = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    evil = tmp_path / XSS
    evil.parent.mkdir(parents=True)
    shutil.copy(src, evil)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{evil} 0\n{tmp_path / '<b>missing</b>.avi'} 1\n")
    cfg = dataclasses.replace(demo_run_config, clips=str(listing), report=str(tmp_path / "report"))
    dom = _render(write_report(run(cfg, cache=parity_cache), cfg.report), tmp_path, "report-escaping.png")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp4" in dom
    assert "<script>alert(1)</script>" not in dom
    assert dom.count("<script") == 1  # only the report's own table sorter
    assert "&lt;b&gt;missing&lt;/b&gt;.avi" in dom


def test_release_set_report_renders(tmp_path):
    """4,000 clips x 4 backends: a few hundred KB of HTML that Chromium renders whole (the call times out at 120 s)."""
    from fixtures.reports import big_result

    html = write_report(big_result(tmp_path), tmp_path / "report")
    assert html.stat().st_size < 5 * 1024 * 1024
    dom = _render(html, tmp_path, "report-release-set.png")
    assert 'id="hidden-flagged"' in dom and dom.count('alt="error histogram and scatter for') == 4


def test_where_it_broke_renders(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    from fixtures.defects import scale_conv_weight

    bad = tmp_path / "bad.onnx"
    weight = scale_conv_weight(demo_artifacts.onnx, bad, 1.05, 3)
    cfg = dataclasses.replace(demo_run_config, onnx=str(bad), backends=["paddle", "onnxruntime"], localize=True, report=str(tmp_path / "r"))
    dom = _render(write_report(run(cfg, cache=parity_cache), cfg.report), tmp_path, "report-where-it-broke.png")
    assert 'id="where"' in dom and "First divergence" in dom and weight in dom
    assert 'alt="error against depth for onnxruntime"' in dom


def _probe(html: Path, tmp_path, expression: str, width: int = 1400, height: int = 900):
    """The JSON value of a JavaScript ``expression`` evaluated in the report as Chromium lays it out in a
    ``width`` x ``height`` window (a copy of the page with a script that writes the value into the DOM)."""
    import html as html_lib
    import json

    probe = tmp_path / "probe.html"
    script = (f'<script>var probed; try {{ probed = {expression}; }} catch (e) {{ probed = {{probe_error: String(e)}}; }}'
              'document.body.setAttribute("data-probe", JSON.stringify(probed));</script>')
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    dom = _chrome(probe, f"--window-size={width},{height}", "--dump-dom", tmp_path=tmp_path).stdout
    value = json.loads(html_lib.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
    assert "probe_error" not in value, value
    return value


def _layout(html: Path, tmp_path, width: int, height: int, shot: str) -> dict:
    """Where the header's conclusion lines are in a ``width`` x ``height`` window, and a screenshot of it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _chrome(html, f"--window-size={width},{height}", f"--screenshot={ARTIFACTS / shot}", tmp_path=tmp_path)
    return _probe(html, tmp_path, """{height: window.innerHeight, width: window.innerWidth, scroll_width: document.documentElement.scrollWidth,
      model: Array.from(document.querySelectorAll("header #model tr")).map(function (e) {
        var b = e.getBoundingClientRect(); return {text: e.innerText.replace(/\\s+/g, " ").trim(), bottom: b.bottom}; }),
      lines: Array.from(document.querySelectorAll("header .conclusion-line")).map(function (e) {
        var b = e.getBoundingClientRect(); return {text: e.textContent.trim(), top: b.top, bottom: b.bottom, right: b.right}; })}""",
                  width, height)


def test_the_model_and_the_conclusion_are_on_the_first_screen(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    """1400x900: the identity line, the verdict and every why line of a failing, localized run are above the fold,
    in the words of conclusion.lines (the terminal's)."""
    from PIL import Image

    from fixtures.defects import scale_conv_weight
    from parity.conclusion import lines

    bad = tmp_path / "bad.onnx"
    scale_conv_weight(demo_artifacts.onnx, bad, 1.05, 3)
    cfg = dataclasses.replace(demo_run_config, onnx=str(bad), backends=["paddle", "onnxruntime"], localize=True, report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    layout = _layout(write_report(result, cfg.report), tmp_path, 1400, 900, "report-first-screen.png")
    expected = lines(result)
    assert [line["text"] for line in layout["lines"]] == expected
    assert expected[0].startswith("gated: model ") and any(line.startswith("why: onnxruntime") for line in expected)
    assert layout["height"] <= 900
    for line in layout["lines"]:
        assert 0 <= line["top"] and line["bottom"] <= layout["height"], f"below the fold: {line}"
        assert line["right"] <= layout["width"]
    # the model's files and hashes too, and nothing wider than the window
    (paddle, onnx) = layout["model"]
    assert paddle["text"].startswith("Paddle model ") and result.artifacts["paddle_params_sha256"][:16] in paddle["text"]
    assert onnx["text"].startswith(f"ONNX {bad} ") and result.artifacts["onnx_sha256"][:16] in onnx["text"]
    assert max(paddle["bottom"], onnx["bottom"]) <= layout["height"] and layout["scroll_width"] <= layout["width"]
    # and the screenshot shows the failing verdict's red banner on that first screen
    shot = Image.open(ARTIFACTS / "report-first-screen.png").convert("RGB")
    assert shot.size[1] <= 900
    red = sum(1 for pixel in shot.getdata() if pixel == (0xB3, 0x26, 0x1E))
    assert red > 20_000


def _rgb(css: str) -> tuple:
    return tuple(int(v) / 255 for v in re.findall(r"\d+", css)[:3])


def _chain_result(tmp_path):
    """A release-set-like result (fixtures.reports) with the pairwise hop matrix of its backends, the environment
    and a conversion record, as ``parity demo`` stores them."""
    import numpy as np

    from fixtures.reports import big_result
    from parity.env import environment

    result = big_result(tmp_path, clips=40, classes=8)
    names = [n for n in result.logits if n != "clips"]
    result.hop_matrix = {"backends": names, "max_abs": [[float(np.abs(result.logits[a] - result.logits[b]).max()) for b in names] for a in names]}
    result.environment = environment()
    result.artifacts = {"onnx": str(tmp_path / "pptsm_v2.onnx"), "onnx_sha256": "efb5f3f9" + "0" * 56, "conversion": {
        "source": "/m/pptsm.json", "opset": 11, "paddle2onnx_version": "2.1.0", "repairs": ["replaced Squeeze.0 with Identity"],
        "lint": [], "checker": "passed"}}
    return result


def test_the_report_reads_like_a_release_note(tmp_path):
    """The hop heat map's numbers contrast with their cells (WCAG 4.5:1, as Chromium computes the styles) beside a
    colour scale; conversion records and the environment are tables; the time is to the second; the smallest
    passing atol says it is the atol needed with the rtol."""
    from parity.report import contrast

    result = _chain_result(tmp_path)
    html = write_report(result, tmp_path / "report")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _chrome(html, "--window-size=1400,3000", f"--screenshot={ARTIFACTS / 'report-release-note.png'}", tmp_path=tmp_path)
    seen = _probe(html, tmp_path, """{
      cells: Array.from(document.querySelectorAll("#hop-heatmap td")).map(function (td) {
        var s = getComputedStyle(td); return {text: td.textContent.trim(), bg: s.backgroundColor, fg: s.color, size: parseFloat(s.fontSize)}; }),
      scale: Array.from(document.querySelectorAll("#hop-scale .ticks span")).map(function (e) { return e.textContent; }),
      bar: document.querySelector("#hop-scale .bar").getBoundingClientRect().width,
      conversion: Array.from(document.querySelectorAll("#artifact-conversion table.nested th")).map(function (e) { return e.textContent; }),
      environment: document.querySelectorAll("#environment-table tr").length,
      finished: document.querySelector("#finished").textContent,
      atol: document.querySelector("#atol-needed").textContent}""")
    names = result.hop_matrix["backends"]
    assert len(seen["cells"]) == len(names) ** 2 >= 4
    for cell in seen["cells"]:
        assert contrast(_rgb(cell["bg"]), _rgb(cell["fg"])) >= 4.5, cell
        assert cell["size"] >= 14
    assert any(c["text"] not in ("0", "–") for c in seen["cells"])  # the numbers are written in
    assert len(seen["scale"]) >= 2 and seen["scale"][0].startswith("1e") and seen["bar"] > 100
    assert seen["conversion"] == ["source", "opset", "paddle2onnx_version", "repairs", "lint", "checker"]
    assert "{" not in html.read_text().split('id="artifact-conversion"')[1].split("</tr>")[0]  # not a raw dict
    assert seen["environment"] == len(result.environment)
    assert re.search(r"Run finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", seen["finished"].strip())
    assert {c.tolerance["rtol"] for c in result.comparisons} != {result.comparisons[0].tolerance["rtol"]}  # fp32 and fp16
    assert seen["atol"] == "atol needed (with rtol r)"
    assert re.search(r"\(rtol 0\.\d+\)</span>", html.read_text())  # then each row says its rtol

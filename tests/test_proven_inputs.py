"""Nothing the gate reads is trusted by name: shards prove they are one run, golden outputs and config files are
checked by content and type, and every setting a user can get wrong is one line (issue 18's defect classes)."""
import json
import shutil

import numpy as np
import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("parity: error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def four_clips(demo_artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("four")
    base = demo_artifacts.val_list.parent
    lines = demo_artifacts.val_list.read_text().split("\n")[:4]
    listing = folder / "list.txt"
    listing.write_text("".join(f"{base / ln.split()[0]} {ln.split()[1]}\n" for ln in lines))
    return listing


def _model(demo_artifacts):
    return ["--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
            "--backends", "paddle,onnxruntime", "--workers", "0"]


@pytest.fixture(scope="module")
def shards(demo_artifacts, four_clips, tmp_path_factory):
    """Shards 1/2 and 2/2 of the four clips, and other shards that are not slices of that run."""
    folder = tmp_path_factory.mktemp("shards")
    args = [*_model(demo_artifacts), "--clips", str(four_clips)]
    out = {}
    for name, extra in {"1of2": ["--shard", "1/2"], "2of2": ["--shard", "2/2"], "2of3": ["--shard", "2/3"],
                        "2of2-lint-off": ["--shard", "2/2", "--lint", "off"]}.items():
        assert main(["run", *args, *extra, "--report", str(folder / name)]) == 0
        out[name] = folder / name
    reordered = folder / "reordered.txt"
    reordered.write_text("".join(reversed(four_clips.read_text().splitlines(keepends=True))))
    assert main(["run", *_model(demo_artifacts), "--clips", str(reordered), "--shard", "2/2", "--report", str(folder / "2of2-reordered")]) == 0
    out["2of2-reordered"] = folder / "2of2-reordered"
    return out


def test_merge_of_one_run_passes(shards, tmp_path):
    assert main(["merge", str(shards["1of2"]), str(shards["2of2"]), "--report", str(tmp_path / "m")]) == 0


@pytest.mark.parametrize("other, problem", [
    ("2of3", "shards must share their count"),
    ("2of2-reordered", "ran another clip list"),
    ("2of2-lint-off", "its setting 'lint' differs"),
])
def test_merge_refuses_shards_that_are_not_one_run(shards, other, problem, tmp_path, capsys):
    """Fails before: 1/2 with 2/3 and a reordered list merged to PASS with clips missing or twice; lint off in one
    shard gave PASS or FAIL by argument order."""
    capsys.readouterr()
    assert main(["merge", str(shards["1of2"]), str(shards[other]), "--report", str(tmp_path / "m")]) == 2
    assert problem in _error(capsys)


def test_merge_refuses_an_incomplete_shard_and_its_own_input_as_output(shards, tmp_path, capsys):
    """Fails before: complete=false was merged; --report on an input overwrote it."""
    broken = tmp_path / "incomplete"
    shutil.copytree(shards["2of2"], broken)
    data = json.loads((broken / "results.json").read_text())
    data["complete"] = False
    (broken / "results.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["merge", str(shards["1of2"]), str(broken), "--report", str(tmp_path / "m")]) == 2
    assert "is not complete" in _error(capsys)
    shutil.rmtree(broken)  # the session checks every results.json it leaves against the schema
    before = (shards["1of2"] / "results.json").read_bytes()
    assert main(["merge", str(shards["1of2"]), str(shards["2of2"]), "--report", str(shards["1of2"])]) == 2
    assert "write the merged report elsewhere" in _error(capsys)
    assert (shards["1of2"] / "results.json").read_bytes() == before
    assert main(["merge", str(shards["1of2"]), str(shards["1of2"]), "--report", str(tmp_path / "m2")]) == 2
    assert "exactly once" in _error(capsys)


def test_shard_flags_that_select_nothing_are_errors(demo_artifacts, four_clips, tmp_path, capsys):
    """Fails before: --shard '' ran unsharded; 6/8 of 4 clips said 'first error: ' and nothing after it."""
    args = [*_model(demo_artifacts), "--clips", str(four_clips), "--report", str(tmp_path / "r")]
    assert main(["run", *args, "--shard", ""]) == 2
    assert "expected i/N" in _error(capsys)
    assert main(["run", *args, "--shard", "6/8"]) == 2
    assert "lists 4 clip(s), so shard 6 of 8 has none" in _error(capsys)


# ----------------------------------------------------------------------------- golden outputs


@pytest.fixture(scope="module")
def golden(shards, tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden") / "g"
    assert main(["golden", "save", str(shards["1of2"]), "--to", str(folder)]) == 0
    return folder


def _golden_run(demo_artifacts, folder, report):
    return main(["run", "--onnx", str(demo_artifacts.onnx), "--golden", str(folder), "--backends", "onnxruntime", "--report", str(report)])


def test_golden_outputs_pass_as_saved(demo_artifacts, golden, tmp_path):
    assert _golden_run(demo_artifacts, golden, tmp_path / "r") == 0


def _broken(golden, tmp_path, name, logits=None, clips=None, meta=None, npz_bytes=None):
    folder = tmp_path / name
    shutil.copytree(golden, folder)
    if npz_bytes is not None:
        (folder / "golden.npz").write_bytes(npz_bytes)
    elif logits is not None or clips is not None:
        with np.load(golden / "golden.npz") as npz:
            np.savez_compressed(folder / "golden.npz", logits=npz["logits"] if logits is None else logits,
                                clips=npz["clips"] if clips is None else clips)
        data = json.loads((folder / "golden.json").read_text())
        from parity.artifacts import sha256_file

        data["npz_sha256"] = sha256_file(folder / "golden.npz")  # a careful forger re-pins the hash too
        (folder / "golden.json").write_text(json.dumps(data))
    if meta is not None:
        (folder / "golden.json").write_text(meta)
    return folder


def test_replaced_golden_logits_are_refused(demo_artifacts, golden, tmp_path, capsys):
    """Fails before: golden.npz replaced by a defective model's logits passed that model."""
    with np.load(golden / "golden.npz") as npz:
        logits, clips = npz["logits"], npz["clips"]
    replaced = tmp_path / "replaced"
    shutil.copytree(golden, replaced)
    np.savez_compressed(replaced / "golden.npz", logits=logits * 1.05, clips=clips)
    capsys.readouterr()
    assert _golden_run(demo_artifacts, replaced, tmp_path / "r") == 2
    assert "golden.npz: its sha256" in _error(capsys)
    reordered = _broken(golden, tmp_path, "reordered", clips=clips[::-1])
    assert _golden_run(demo_artifacts, reordered, tmp_path / "r") == 2
    assert "not the clips of golden.json in the same order" in _error(capsys)


@pytest.mark.parametrize("kind, problem", [
    ("row-short", "logits must be float"),
    ("other-classes", "logits must be float"),
    ("object-array", "not golden outputs"),
    ("broken-json", "golden.json: not valid JSON"),
    ("old-schema", "save it again with `parity golden save`"),
])
def test_malformed_golden_folders_are_one_line(demo_artifacts, golden, kind, problem, tmp_path, capsys):
    """Fails before: each was 'internal error' (or, for a row short, an IndexError mid-run)."""
    with np.load(golden / "golden.npz") as npz:
        logits = npz["logits"]
    folder = {
        "row-short": lambda: _broken(golden, tmp_path, kind, logits=logits[:-1]),
        "other-classes": lambda: _broken(golden, tmp_path, kind, logits=np.zeros((len(logits), 0), np.float32)),
        "object-array": lambda: _broken(golden, tmp_path, kind, logits=np.array([object()] * len(logits), dtype=object)),
        "broken-json": lambda: _broken(golden, tmp_path, kind, meta="{not json"),
        "old-schema": lambda: _broken(golden, tmp_path, kind, meta=json.dumps({**json.loads((golden / "golden.json").read_text()),
                                                                                 "schema_version": 1})),
    }[kind]()
    capsys.readouterr()
    assert _golden_run(demo_artifacts, folder, tmp_path / "r") == 2
    assert problem in _error(capsys)


# ----------------------------------------------------------------------------- configuration


def _config_run(demo_artifacts, four_clips, config, tmp_path, *extra):
    return main(["run", *_model(demo_artifacts), "--clips", str(four_clips), "--config", str(config), "--report", str(tmp_path / "r"), *extra])


@pytest.mark.parametrize("name, text, problem", [
    ("pyproject.toml", '[tool.pairty]\nrequire = ["tensorrt-fp16"]\n', "no [tool.parity] table (it has [tool.pairty])"),
    ("parity.toml", '[tolerance.fp32]\natol = "1_0_0_0"\n', "tolerance.fp32.atol must be a number, not '1_0_0_0'"),
    ("parity.toml", 'workers = "2"\n', "workers must be an integer, not '2'"),
    ("parity.toml", "external_timeout = nan\n", "external-timeout must be a finite number"),
    ("parity.toml", "external_timeout = 0\n", "external-timeout must be a finite number"),
    ("parity.toml", '[external_precision]\nnobody = "fp16"\n', "external-precision 'nobody': no --external or --logits"),
])
def test_config_files_are_checked_as_strictly_as_flags(demo_artifacts, four_clips, name, text, problem, tmp_path, capsys):
    """Fails before: the misspelt table was ignored (its require too) and the gate passed; "1_0_0_0" became 1000;
    nan and 0 timeouts and an undefined external_precision were taken. (A string for workers was refused already.)"""
    config = tmp_path / name
    config.write_text(text)
    assert _config_run(demo_artifacts, four_clips, config, tmp_path) == 2
    assert problem in _error(capsys)


def test_a_binary_config_is_one_line(demo_artifacts, four_clips, tmp_path, capsys):
    """Fails before: internal error (UnicodeDecodeError)."""
    config = tmp_path / "parity.toml"
    config.write_bytes(bytes(range(256)))
    assert _config_run(demo_artifacts, four_clips, config, tmp_path) == 2
    assert "not a TOML config file (not UTF-8 text)" in _error(capsys)


@pytest.mark.parametrize("extra, problem", [
    (["--external-timeout", "0"], "external-timeout must be a finite number of seconds above 0"),
    (["--external-timeout", "-1"], "external-timeout must be a finite number of seconds above 0"),
    (["--external-timeout", "nan"], "external-timeout must be a finite number of seconds above 0"),
    (["--backend-timeout", "nan"], "backend-timeout must be a finite number"),
    (["--logits", "dev=LOGITS", "--external", "dev=prog {video} {out}"], "'dev' names both a program"),
    (["--logits", "dev=LOGITS", "--logits", "dev=LOGITS"], "--logits 'dev' is given twice"),
])
def test_external_numbers_and_names_are_checked(demo_artifacts, four_clips, extra, problem, tmp_path, capsys):
    """Fails before: a 0 timeout was ignored, -1 timed out every clip, nan crashed; a name shared by a program and a
    file never ran the program, and two pass lines described the file."""
    logits = tmp_path / "dev.npz"
    np.savez(logits, **{"x.mp4": np.zeros(4, np.float32)})
    extra = [str(logits) if e == "LOGITS" else e.replace("LOGITS", str(logits)) for e in extra]
    assert main(["run", *_model(demo_artifacts), "--clips", str(four_clips), "--report", str(tmp_path / "r"), *extra]) == 2
    assert problem in _error(capsys)


def test_boolean_flags_have_no_forms():
    from parity.cli import build_parser

    parser = build_parser()
    for flag in ("isolate", "temporal-attention", "localize", "advise", "allow-trt-fallback", "allow-low-precision-reference", "trust-engine"):
        assert getattr(parser.parse_args(["run", f"--no-{flag}"]), flag.replace("-", "_")) is False
        assert getattr(parser.parse_args(["run", f"--{flag}"]), flag.replace("-", "_")) is True


def test_tolerances_that_cannot_fail_are_warned(demo_artifacts, four_clips, tmp_path, capsys):
    """Fails before: tolerances opened so wide that the reference x1.05 passes gave no word."""
    capsys.readouterr()
    assert main(["run", *_model(demo_artifacts), "--clips", str(four_clips), "--report", str(tmp_path / "r"),
                 "--tol", "fp32.atol=10"]) == 0
    out = capsys.readouterr().out
    assert "warning: the tolerances of onnxruntime (atol 10, rtol 0.001) pass the reference's own logits scaled x1.05" in out
    notes = json.loads((tmp_path / "r" / "results.json").read_text())["notes"]
    assert any(n.startswith("warning: the tolerances of onnxruntime") for n in notes)
    assert "scaled x1.05" in (tmp_path / "r" / "index.html").read_text()
    assert main(["run", *_model(demo_artifacts), "--clips", str(four_clips), "--report", str(tmp_path / "r2")]) == 0
    assert "scaled x1.05" not in capsys.readouterr().out  # the shipped fp32 tolerances do catch it


# ----------------------------------------------------------------------------- paddle-dygraph


def test_a_checkpoint_alone_runs_as_the_model_it_holds(demo_artifacts, four_clips, tmp_path, capsys):
    """The demo's checkpoint (LTA, scale 0.25-like widths, its own depths) without model_spec.json beside it: the model
    is read from the checkpoint. Fails before: PP-TSMv2's full-size defaults were built and the load named missing keys."""
    shutil.copy(demo_artifacts.trained / "model.pdparams", tmp_path / "model.pdparams")
    args = [*_model(demo_artifacts), "--clips", str(four_clips), "--weights", str(tmp_path / "model.pdparams")]
    assert main(["run", *args, "--report", str(tmp_path / "r")]) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert {c["backend"]: c["passed"] for c in data["comparisons"]}["paddle-dygraph"] is True
    capsys.readouterr()
    assert main(["run", *args, "--no-temporal-attention", "--report", str(tmp_path / "r2")]) == 1  # a flag still wins, and is wrong here
    assert "global_attention" in capsys.readouterr().out


def test_the_decode_time_limit_is_a_setting_with_the_streams_default(demo_artifacts, four_clips, tmp_path, capsys):
    from parity.config import RunConfig
    from parity.stream import DECODE_TIMEOUT

    assert RunConfig().decode_timeout == DECODE_TIMEOUT
    assert main(["run", *_model(demo_artifacts), "--clips", str(four_clips), "--decode-timeout", "0", "--report", str(tmp_path / "r")]) == 2
    assert "decode-timeout must be a finite number of seconds above 0" in _error(capsys)


def test_trust_engine_reaches_the_tensorrt_backend(demo_artifacts, tmp_path, monkeypatch):
    """--trust-engine is a setting of the run that the TensorRT runner reads from the artifacts (it refuses an engine
    without its sidecar otherwise: tests/test_gpu_truth.py)."""
    from parity.cli import build_parser
    from parity.config import RunConfig
    from parity.errors import HarnessError
    from parity.run import plan, run

    engine = tmp_path / "x.engine"
    engine.write_bytes(b"not an engine")
    seen = {}

    def stop(cfg, art, *rest):
        seen["trust"] = art.trust_engine
        raise HarnessError("stop here")

    monkeypatch.setattr(plan, "preprocess_config", stop)
    for flags, trusted in ((["--trust-engine"], True), ([], False)):
        cfg = RunConfig.from_args(build_parser().parse_args(["run", "--onnx", str(demo_artifacts.onnx), "--trt-engine", str(engine),
                                                            "--clips", str(demo_artifacts.val_list), *flags]))
        with pytest.raises(HarnessError):
            run(cfg)
        assert seen["trust"] is trusted


def test_duplicates_and_saved_inputs_are_said(demo_artifacts, four_clips, tmp_path, capsys):
    """A clip listed twice is counted once, with a warning in the terminal and results.json; saved input tensors are
    'saved inputs', not 'from cache'. Fails before: no word in the terminal; --inputs said 'from cache 4'."""
    doubled = tmp_path / "doubled.txt"
    doubled.write_text(four_clips.read_text() + four_clips.read_text().splitlines(keepends=True)[0])
    capsys.readouterr()
    assert main(["run", *_model(demo_artifacts), "--clips", str(doubled), "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "warning: " in out and "1 duplicate line(s) dropped" in out
    assert json.loads((tmp_path / "r" / "results.json").read_text())["comparisons"][0]["clips_compared"] == 4
    assert main(["preprocess", "--clips", str(four_clips), "--out", str(tmp_path / "t"), "--onnx", str(demo_artifacts.onnx)]) == 0
    capsys.readouterr()
    assert main(["run", *_model(demo_artifacts), "--inputs", str(tmp_path / "t" / "list.txt"), "--report", str(tmp_path / "r2")]) == 0
    out = capsys.readouterr().out
    assert "decoded 0, from cache 0, saved inputs 4" in out and " acc " in out  # labelled inputs are scored


def test_shard_and_report_arrays_are_proven_by_results_json(shards, tmp_path, capsys):
    """logits.npz changed after the run (two clips' rows swapped): merge and golden save refuse it. Fails before:
    the merge judged the swapped rows, and golden save stored them as the reference."""
    tampered = tmp_path / "tampered"
    shutil.copytree(shards["2of2"], tampered)
    with np.load(tampered / "logits.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    for name, rows in arrays.items():
        if name != "clips":
            rows[[0, 1]] = rows[[1, 0]]
    np.savez_compressed(tampered / "logits.npz", **arrays)
    capsys.readouterr()
    assert main(["merge", str(shards["1of2"]), str(tampered), "--report", str(tmp_path / "m")]) == 2
    assert "logits.npz: not the file its results.json pinned" in _error(capsys)
    assert main(["golden", "save", str(tampered), "--to", str(tmp_path / "g")]) == 2
    assert "logits.npz: not the file its results.json pinned" in _error(capsys)

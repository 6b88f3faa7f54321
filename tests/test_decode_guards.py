"""Inputs and bounded time (issue 18): clips that are not regular files, decodes that hang, Ctrl-C during a
hung decode, tensor-cache entries proven by their content, duplicate list lines; and the batch shapes each
runner was really given (issue 19 reads them)."""
import dataclasses
import json

# ----------------------------------------------------------------------------- batch shapes


def test_each_backend_records_the_batch_shapes_its_runner_was_given(demo_run_config, parity_cache, tmp_path):
    from parity.report import write_report
    from parity.run import run

    cfg = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"], batch_size=5, workers=0, report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    write_report(result, tmp_path)
    clips = len(result.clips)
    T, S = result.preprocess["num_seg"], result.preprocess["target_size"]
    want = [[5, T, 3, S, S]] + ([[clips % 5, T, 3, S, S]] if clips % 5 else [])
    data = json.loads((tmp_path / "results.json").read_text())
    assert {b["name"]: b["batch_shapes"] for b in data["backends"]} == {"paddle": want, "onnxruntime": want}

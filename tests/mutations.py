"""Each behaviour the README's "What the tests prove" table names, broken on purpose: its test must fail.

    python tests/mutations.py               # every mutation; each one's test must fail with it applied
    python tests/mutations.py NAME ...      # only these (names from --list)
    python tests/mutations.py --clean       # first: every test passes unmutated
    python tests/mutations.py --list        # name, test, what the mutation breaks
    nox -s mutations [-- NAME ...]

A mutation is a text edit of the checkout's files (``old`` -> ``new``, ``old`` found exactly once, or the
mutation is stale: the code moved and the mutation must follow it). It is applied to a temporary copy (the last
commit's source with the working tree's tests; with --worktree, the working tree as it is), never to the working
tree itself, and the test runs in that copy with the copy first on PYTHONPATH, so the CLI subprocesses, decode
workers and isolated backends it starts run the mutated code too. Artifacts come from the usual cache
(~/.cache/pptsm-parity). A mutated module that an artifact's cache key hashes (parity/inputs.py is part of the
demo training's key, parity/precision/int8.py of the INT8 model's) builds entries of its own the first time (the
demo model retrains in about a minute); the entries of the unmutated code are never touched.

Exit status 0 when every mutation was caught (its test failed) and, with --clean, every test passed unmutated.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(".git", ".nox", "reports", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")


@dataclass(frozen=True)
class Mutation:
    name: str
    test: str  # a pytest node id, relative to the checkout
    what: str  # the behaviour it breaks
    edits: tuple[tuple[str, str, str], ...]  # (file, old, new)


M = Mutation
MUTATIONS = [
    M("golden-imports-paddle", "tests/test_golden.py::test_golden_gates_where_paddle_cannot_be_imported",
      "parity/golden.py imports paddle at its top",
      (("parity/golden.py", "import numpy as np\n", "import numpy as np\nimport paddle  # noqa: F401\n"),)),
    M("comparisons-by-hash", "tests/test_cli.py::test_two_cli_runs_under_other_hash_seeds_write_the_same_results",
      "comparisons ordered by hash(name)",
      (("parity/verdict.py", "        for lane in selection.compared:\n",
        "        for lane in sorted(selection.compared, key=lambda lane: hash(lane.name)):\n"),)),
    M("oom-handler-deleted", "tests/test_faults.py::test_a_backend_out_of_memory_is_its_error",
      "the isolated worker's MemoryError handler deleted",
      (("parity/backends/isolated.py", "        except MemoryError as exc:\n", "        except ZeroDivisionError as exc:  # mutated\n"),)),
    M("near-tie-flip-fails", "tests/test_compare.py::test_a_near_tie_flip_does_not_fail",
      "every top-1 flip fails its clip",
      (("parity/compare.py", "        clip.passed = not clip.problems\n        if finite[i] and not clip.top1_agrees:\n",
        "        clip.passed = not clip.problems and bool(clip.top1_agrees)\n        if finite[i] and not clip.top1_agrees:\n"),)),
    M("hop-precision-inverted", "tests/test_chain.py::test_a_clean_run_has_no_failing_hop_and_judges_fp16_hops_at_fp16",
      "a hop judged at the higher of its two precisions",
      (("parity/diagnose/hops.py", "PRECISION_RANK.get(a.precision, 0) < PRECISION_RANK.get(b.precision, 0) else b.precision",
        "PRECISION_RANK.get(a.precision, 0) > PRECISION_RANK.get(b.precision, 0) else b.precision"),)),
    M("ci-unknown-backend", "tests/test_ci.py::test_every_ci_example_command_parses_with_real_flags_and_backends",
      "tensorrt-fp23 in a CI example",
      (("examples/ci/github/parity-gpu.yml", "--backends onnxruntime-cuda,tensorrt-fp32,tensorrt-fp16\n",
        "--backends onnxruntime-cuda,tensorrt-fp23,tensorrt-fp16\n"),)),
    M("ci-bad-shard", "tests/test_ci.py::test_every_ci_example_command_parses_with_real_flags_and_backends",
      "--shard 1of4 in a CI example",
      (("examples/ci/github/parity-sharded.yml", "--shard ${{ matrix.shard }}/4", "--shard 1of4"),)),
    M("ci-typo-in-config", "tests/test_ci.py::test_every_ci_example_command_parses_with_real_flags_and_backends",
      "onnxrutime-fp16 in the CI examples' parity.toml",
      (("examples/ci/parity.toml", 'backends = ["onnxruntime", "onnxruntime-fp16"]', 'backends = ["onnxruntime", "onnxrutime-fp16"]'),)),
    M("int8-zero-calibration", "tests/test_precision.py::test_int8_calibrated_on_train_clips_judged_on_val",
      "INT8 calibrated on all-zero tensors",
      (("parity/precision/int8.py", "    return [i.tensor for i in items], [i.sha256 for i in items]\n",
        "    return [np.zeros_like(i.tensor) for i in items], [i.sha256 for i in items]\n"),)),
    M("onednn-not-isolated", "tests/test_scale.py::test_each_clip_is_decoded_once_with_a_backend_in_its_own_process",
      "paddle-onednn runs in the test's process",
      (("parity/backends/builtin.py", '_paddle_mode("onednn-ir", "paddle-onednn"), isolate=True,', '_paddle_mode("onednn-ir", "paddle-onednn"), isolate=False,'),)),
    M("decode-in-process", "tests/test_scale.py::test_each_clip_is_decoded_once_with_a_backend_in_its_own_process",
      "the stream decodes in the main process whatever --workers says",
      (("parity/stream.py", "    if workers <= 0:\n", "    if True:  # mutated\n"),)),
    M("decode-one-worker", "tests/test_scale.py::test_each_clip_is_decoded_once_with_a_backend_in_its_own_process",
      "one decode worker, one clip at a time",
      (("parity/stream.py", "self.size, self.timeout, self.stats = workers,", "self.size, self.timeout, self.stats = 1,"),)),
    M("decode-twice", "tests/test_scale.py::test_each_clip_is_decoded_once_with_a_backend_in_its_own_process",
      "each clip decoded twice in its worker (the item still says decoded once)",
      (("parity/stream.py", "        conn.send(decode(*args))\n", "        decode(*args)\n        conn.send(decode(*args))\n"),)),
    M("decode-workers-keep-tensors", "tests/test_scale.py::test_peak_memory_does_not_grow_with_the_number_of_clips",
      "decode workers keep every tensor they made",
      (("parity/stream.py", "        conn.send(decode(*args))\n",
        "        _worker_main.__dict__.setdefault('kept', []).append(decode(*args))\n        conn.send(_worker_main.kept[-1])\n"),)),
    M("variant-decodes-again", "tests/test_chain.py::test_preprocessing_attribution",
      "each preprocessing variant decodes the video again",
      (("parity/inputs.py", "tensors[v] = clip_tensor(clip.path, frames, c)",
        "tensors[v] = clip_tensor(clip.path, load_clip_frames(clip.path, cfg.num_seg, clip.num_frames), c)"),)),
    M("lanes-at-batch-one", "tests/test_scale.py::test_batch_check_compares_each_backend_with_itself_at_batch_one",
      "every lane runs at batch 1 (its record still says its configured batch)",
      (("parity/engines/local.py", "if len(self.buffers[name]) >= self.lanes[name].batch:", "if len(self.buffers[name]) >= 1:"),)),
    M("lanes-at-batch-one-batched", "tests/test_scale.py::test_batched_run_matches_batch_one",
      "every lane runs at batch 1 under --batch-size 5",
      (("parity/engines/local.py", "if len(self.buffers[name]) >= self.lanes[name].batch:", "if len(self.buffers[name]) >= 1:"),)),
    M("comparison-always-passes", "tests/test_run.py::test_injected_defect_fails_the_gate[conv_weight_x1.05]",
      "a comparison passes whatever its reasons",
      (("parity/compare.py", "        passed=not reasons,\n", "        passed=True,\n"),)),
    M("tensor-cache-never-read", "tests/test_scale.py::test_tensor_cache_makes_a_rerun_decode_nothing",
      "the tensor cache is written but never read",
      (("parity/inputs.py", "cache.get(item.sha256, c, decoder) if cache is not None else None", "None"),)),
    M("isolate-flag-ignored", "tests/test_backends.py::test_isolate_flag_runs_every_backend_in_its_own_process",
      "--isolate runs only the always-isolated backends in a child",
      (("parity/engines/local.py", "if (self.isolate or lane.backend.isolated) and", "if lane.backend.isolated and"),)),
    M("trt-fp16-path-swapped", "tests/test_gpu_code.py::test_tensorrt_10_and_11_take_different_fp16_paths",
      "TensorRT 10 takes the strongly typed FP16 path and 11 the builder flag",
      (("parity/backends/tensorrt.py", 'return "builder-flag" if hasattr(getattr(trt, "BuilderFlag", None), "FP16") else "strongly-typed"',
        'return "strongly-typed" if hasattr(getattr(trt, "BuilderFlag", None), "FP16") else "builder-flag"'),)),
    M("mcnemar-one-sided", "tests/test_compare.py::test_mcnemar_exact_p_value_by_hand",
      "McNemar's p-value one-sided",
      (("parity/compare.py", "    return min(1.0, 2 * tail)\n", "    return min(1.0, tail)\n"),)),
    M("plugin-verdict-item-weaker", "tests/test_judge.py::test_run_pytest_and_merge_reach_one_verdict[lint-only-defect]",
      "the pytest plugin's verdict item fails on comparisons only (a lint finding passes it)",
      (("parity/pytest_gate.py", "            _fail(result.failures)\n", "            _fail([f for f in result.failures if f.kind == \"comparison\"])\n"),)),
    M("merge-ignores-the-list", "tests/test_proven_inputs.py::test_merge_refuses_shards_that_are_not_one_run",
      "parity merge does not check that the shards ran one clip list",
      (("parity/merge.py", 'if shard["run"]["list_sha256"] != first["run"]["list_sha256"] or spec["clips_listed"] != listed:',
        "if False:"),)),
    M("golden-npz-unpinned", "tests/test_proven_inputs.py::test_replaced_golden_logits_are_refused",
      "golden.npz is used without checking the sha256 golden.json pinned",
      (("parity/golden.py", '        if actual != meta["npz_sha256"]:\n', "        if False:\n"),)),
    M("config-strings-for-numbers", "tests/test_proven_inputs.py::test_config_files_are_checked_as_strictly_as_flags",
      "a config file's tolerance may be a string",
      (("parity/config.py", '    number = {"type": "number"}', '    number = {"type": ["number", "string"]}'),)),
    M("golden-by-path-only", "tests/test_travels.py::test_golden_clips_are_found_by_content_wherever_they_are",
      "golden outputs find clips by path only, not by content",
      (("parity/golden.py", "        i = j if j is not None else self._by_sha.get(sha256)\n", "        i = j\n"),)),
    M("schedule-always-turns", "tests/test_schedule.py::test_poor_scaling_picks_lanes_each_backend_on_its_own_core",
      "the chooser never picks lanes",
      (("parity/schedule.py", "    if not allow_lanes or len(costs) < 2 and not gpu:\n", "    if True:\n"),)),
    M("lanes-not-pinned", "tests/test_schedule.py::test_isolated_child_gets_its_cores_and_passive_wait",
      "a lane's process runs on any core",
      (("parity/backends/isolated.py", "        os.sched_setaffinity(0, cpus)\n", "        pass\n"),)),
    M("ort-spins", "tests/test_schedule.py::test_ort_sessions_do_not_spin",
      "ONNX Runtime sessions keep spinning threads",
      (("parity/artifacts/ort.py", "    for key, value in {**NO_SPIN, **(config or {})}.items():\n", "    for key, value in (config or {}).items():\n"),)),
    M("lanes-take-turns-in-process", "tests/test_schedule.py::test_same_logits_and_verdicts_whatever_the_schedule",
      "--schedule lanes runs the backends in this process",
      (("parity/engines/local.py", "        if self.lanes and (group is not None or lane.name in self.schedule.unpinned):\n",
        "        if False:\n"),)),
    M("trial-always-keeps-lanes", "tests/test_schedule.py::test_lanes_are_tried_against_turns_on_the_first_clips_and_the_faster_kept",
      "the trial keeps lanes even when turns ran faster",
      (("parity/engines/trial.py", '        keep = "lanes" if lanes_s < turns_s * (1.0 - MARGIN) else "turns"', '        keep = "lanes"  #'),)),
    M("decode-niced-10", "tests/test_schedule.py::test_decode_workers_yield_every_core_to_the_backends",
      "decode workers at nice 10, where they slowed the backends inside the run",
      (("parity/stream.py", "DECODE_NICE = 19\n", "DECODE_NICE = 10\n"),)),
    M("decode-start-unheld", "tests/test_faults.py::test_a_ctrl_c_while_a_decode_worker_starts_lands_once_it_has_its_orders",
      "a decode worker started with Ctrl-C not held: cut mid-start, it prints a traceback",
      (("parity/stream.py", "        with held():  # a Ctrl-C lands once the worker has all its orders and is in _LIVE, to be killed\n",
        "        if True:  # mutated\n"),)),
    M("backend-start-unheld", "tests/test_faults.py::test_a_ctrl_c_while_a_backend_process_starts_lands_once_it_has_its_orders",
      "a backend process started with Ctrl-C not held",
      (("parity/backends/isolated.py", "            with held():  # a Ctrl-C lands once the child has all its orders, and ends it through deactivate\n",
        "            if True:  # mutated\n"),)),
    M("held-masks-one-thread", "tests/test_faults.py::test_a_held_ctrl_c_lands_after_the_block_whichever_thread_the_kernel_hands_it_to",
      "signals held by the calling thread's mask alone, which another thread's taking of them bypasses",
      (("parity/signals.py", "                deferred[sig] = signal.signal(sig, lambda signum, frame: noted.append(signum))\n",
        "                pass\n"),)),
    M("ctrl-c-unhandled-in-imports", "tests/test_faults.py::test_a_ctrl_c_during_the_command_lines_imports_is_one_line",
      "the SIGINT handler set only once the command line's imports are done",
      (("parity/__main__.py", "    handle_interrupts()\n", ""),)),
    M("library-error-hides-ctrl-c", "tests/test_cli.py::test_a_ctrl_c_that_a_library_made_its_own_error_is_an_interruption",
      "a Ctrl-C a library turned into its own error is reported as an internal error",
      (("parity/cli/__init__.py", "        if INTERRUPTED.is_set():  # a library made the Ctrl-C its own error", "        if False:  # mutated"),)),
    M("interruption-outlives-its-call", "tests/test_cli.py::test_a_ctrl_c_that_a_library_made_its_own_error_is_an_interruption",
      "an earlier call's Ctrl-C marks every later call in the process as interrupted",
      (("parity/signals.py", "    INTERRUPTED.clear()\n", ""),)),
    M("sigterm-kills-outright", "tests/test_faults.py::test_a_sigterm_is_an_interruption_that_leaves_nothing_behind",
      "SIGTERM left at its default: the run dies without stopping its backends, their logs left in TMPDIR",
      (("parity/signals.py", "    return {sig: signal.signal(sig, on_interrupt) for sig in HELD}\n",
        "    return {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT,)}\n"),)),
    M("orphan-backend-keeps-its-log", "tests/test_faults.py::test_the_backend_processes_of_a_killed_run_end_and_remove_their_logs",
      "a backend process whose parent was killed leaves its log behind",
      (("parity/backends/isolated.py", "        os.unlink(log_path)\n", "        pass\n"),)),
    M("paddle-keeps-sigterm", "tests/test_faults.py::test_a_sigterm_after_paddle_loaded_is_still_an_interruption",
      "the handlers a native import replaced are not put back: paddle's SIGTERM handler aborts the run",
      (("parity/optional.py", "        finally:\n            _handlers_back()\n", "        finally:\n            pass\n"),)),
    M("main-keeps-its-handlers", "tests/test_cli.py::test_a_ctrl_c_that_a_library_made_its_own_error_is_an_interruption",
      "parity.cli.main leaves its SIGINT/SIGTERM handlers in the program that called it",
      (("parity/cli/__init__.py", "        restore_handlers(replaced)  # a program that called main keeps its own\n", "        pass\n"),)),
    M("convert-writes-in-place", "tests/test_build.py::test_an_interrupted_conversion_leaves_the_earlier_model_and_nothing_else",
      "parity convert writes paddle2onnx's output straight to --out, where an interrupted conversion leaves it unreviewed",
      (("parity/artifacts/convert.py", "        return _convert(paddle_model, work, out, opset, repair, review)\n",
        "        return _convert(paddle_model, out, out, opset, repair, review)\n"),)),
    M("convert-leaves-its-partial", "tests/test_build.py::test_an_interrupted_conversion_leaves_the_earlier_model_and_nothing_else",
      "an interrupted conversion leaves its partial file beside --out",
      (("parity/artifacts/convert.py", "        work.unlink(missing_ok=True)\n", "        pass\n"),)),
    M("plugin-loads-the-gate-at-start", "tests/test_pytest_plugin.py::test_a_session_without_the_gate_loads_nothing_of_parity",
      "the pytest plugin imports the whole gate in every pytest session",
      (("parity/pytest_plugin.py", 'GATE = "parity.pytest_gate"\n', 'GATE = "parity.pytest_gate"\nimportlib.import_module(GATE)\n'),)),
    M("golden-recipe-unchecked", "tests/test_signatures.py::test_golden_outputs_of_a_helper_gate_only_its_own_preprocessing",
      "golden outputs of another helper are used whatever the run's preprocessing",
      (("parity/run/plan.py", "    golden_recipe_agrees(golden, recipe)  # before", "    pass  # before"),)),
    M("ray-int8-needs-shared-paths", "tests/test_ray_cluster.py::test_a_two_node_cluster_whose_worker_cannot_see_the_files_equals_the_local_engine",
      "onnxruntime-int8 on Ray again needs the calibration clips where its actor runs",
      (("parity/engines/ray.py", " and lane.backend.calibrate is None and not self.shared_paths:", " and not self.shared_paths:"),)),
    M("trial-times-queued-clips", "tests/test_schedule.py::test_lanes_are_tried_against_turns_on_the_first_clips_and_the_faster_kept",
      "the trial times the lanes on the clips decoded ahead while runners started",
      (("parity/engines/trial.py", "            if self.seen > self.skip:", "            if self.seen > 1:"),)),
]
BY_NAME = {m.name: m for m in MUTATIONS}


# What a copy takes from the working tree, over the last commit: the tests and what they read.
TEST_SIDE = ("tests", "fixtures", "examples", "conftest.py", "noxfile.py")


def copy_checkout(dst: Path, worktree: bool = False) -> Path:
    """The last commit (``git archive HEAD``) with the working tree's tests, fixtures and examples over it; or,
    with ``worktree``, the working tree as it is (uncommitted source edits included)."""
    if worktree:
        shutil.copytree(ROOT, dst, ignore=COPY_IGNORE, symlinks=True)
        return dst
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    for name in TEST_SIDE:
        src = ROOT / name
        if src.is_dir():
            shutil.rmtree(dst / name, ignore_errors=True)
            shutil.copytree(src, dst / name, ignore=COPY_IGNORE, symlinks=True)
        elif src.is_file():
            shutil.copy2(src, dst / name)
    return dst


def apply(mutation: Mutation, tree: Path) -> str | None:
    """Apply the edits in ``tree``; the reason it is stale, if it is."""
    for file, old, new in mutation.edits:
        path = tree / file
        text = path.read_text()
        if text.count(old) != 1:
            return f"stale: {file} has {text.count(old)} copies of {old.strip()[:60]!r} (the code moved; update the mutation)"
        path.write_text(text.replace(old, new))
    return None


def run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)}
    env.pop("PYTHONHASHSEED", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:g} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    why = [ln[1:].strip() for ln in lines if ln.startswith("E ")]  # the first assertion line: what the test saw
    return proc.returncode, " / ".join(lines[-1:] + why[:1])[:400]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="mutations to run (default: all)")
    p.add_argument("--clean", action="store_true", help="also check that every selected test passes unmutated")
    p.add_argument("--list", action="store_true", help="list the mutations and their tests")
    p.add_argument("--timeout", type=float, default=1800, help="per test run, seconds")
    p.add_argument("--worktree", action="store_true",
                   help="mutate the working tree's source as it is (default: the last commit's, with the working tree's tests)")
    args = p.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28} {m.test}\n{'':28} {m.what}")
        return 0
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        p.error(f"unknown mutation(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[n] for n in args.names] if args.names else MUTATIONS
    ok = True
    with tempfile.TemporaryDirectory(prefix="parity-mutations-") as tmp:
        if args.clean:
            tests = sorted({m.test for m in chosen})
            start = time.monotonic()
            code, summary = run_tests(copy_checkout(Path(tmp) / "clean", args.worktree), tests, args.timeout * len(tests))
            ok &= code == 0
            print(f"{'clean':28} {'PASS' if code == 0 else 'FAILED':9} {time.monotonic() - start:6.0f}s  {len(tests)} tests unmutated: {summary}",
                  flush=True)
        for m in chosen:
            tree = copy_checkout(Path(tmp) / m.name, args.worktree)
            start = time.monotonic()
            stale = apply(m, tree)
            if stale:
                code, summary = None, stale
            else:
                code, summary = run_tests(tree, [m.test], args.timeout)
            # pytest exits 1 when a test failed (or errored in its setup); 0 means the mutation survived,
            # anything else (collection error, interrupted, timeout) says nothing about the test
            verdict = {0: "SURVIVED", 1: "caught"}.get(code, "BROKEN" if code is not None else "STALE")
            ok &= verdict == "caught"
            print(f"{m.name:28} {verdict:9} {time.monotonic() - start:6.0f}s  {m.test}: {summary}", flush=True)
            shutil.rmtree(tree, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

import numpy as np

from parity.compare import compare_logits
from parity.config import Tolerance, default_tolerances

FP32 = default_tolerances()["fp32"]
FP16 = default_tolerances()["fp16"]


def _logits(n=20, c=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    logits[np.arange(n), labels] += 8  # confident, like a trained model
    return logits, [int(v) for v in labels]


def _compare(ref, out, labels, tol=FP32):
    paths = [f"clip{i}.mp4" for i in range(len(ref))]
    return compare_logits("b", "ref", "fp32", paths, labels, ref, out, tol)


def test_identical_logits_pass():
    ref, labels = _logits()
    c = _compare(ref, ref.copy(), labels)
    assert c.passed and c.max_abs == 0 and c.top1_agreement == 1 and c.accuracy_delta == 0 and not c.failed_clips


def test_fp32_noise_passes_and_real_error_fails():
    ref, labels = _logits()
    rng = np.random.default_rng(1)
    assert _compare(ref, ref + rng.normal(0, 3e-6, ref.shape).astype(np.float32), labels).passed
    bad = ref.copy()
    bad[3] *= 1.01
    c = _compare(ref, bad, labels)
    assert not c.passed and c.failed_clips == ["clip3.mp4"]
    assert "1 of 20 clips outside tolerance" in c.reasons[0]
    assert c.min_passing_atol > FP32.atol


def test_elementwise_rule_needs_both_atol_and_rtol():
    ref = np.array([[100.0, 0.0, 0.0, 0.0]], np.float32)
    out = ref + np.array([[0.05, 0, 0, 0]], np.float32)  # abs 0.05 > atol, rel 5e-4 < rtol 1e-3
    assert _compare(ref, out, [0]).passed
    out = ref + np.array([[0.0, 0.05, 0, 0]], np.float32)  # abs 0.05 on a zero reference
    assert not _compare(ref, out, [0]).passed


def test_top1_flip_and_accuracy_drop_fail_fp16_set_rules():
    ref, labels = _logits(n=100)
    out = ref.copy()
    # swap the two best classes of two clips: a top-1 flip each, small numeric change allowed by loose atol
    for i in (0, 1):
        order = np.argsort(-out[i])
        out[i, order[0]], out[i, order[1]] = out[i, order[1]], out[i, order[0]]
    loose = Tolerance(atol=100, rtol=100, min_cosine=0, min_top1_agreement=0.99, max_accuracy_drop=0.005)
    c = _compare(ref, out, labels, loose)
    assert c.top1_agreement == 0.98
    assert not c.passed
    assert any("top-1 agreement" in r for r in c.reasons)
    assert any("accuracy" in r for r in c.reasons)
    assert set(c.failed_clips) == {"clip0.mp4", "clip1.mp4"}


def test_unlabelled_clips_skip_accuracy():
    ref, _ = _logits()
    c = _compare(ref, ref, [None] * len(ref))
    assert c.accuracy is None and c.accuracy_delta is None and c.passed


def test_default_tolerances_differ_per_precision():
    assert FP16.atol > FP32.atol and FP16.min_top1_agreement < FP32.min_top1_agreement

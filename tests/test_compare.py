import numpy as np
import pytest

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


def _flip_case(margin, tol=FP16):
    """200 confident clips; one clip's reference leads by ``margin`` and the backend swaps its top two."""
    ref, labels = _logits(n=200, c=4, seed=3)
    ref[0] = [margin, 0.0, -3.0, -3.0]
    out = ref.copy()
    out[0] = [0.0, margin, -3.0, -3.0]
    paths = [f"clip{i}.mp4" for i in range(len(ref))]
    return compare_logits("b", "ref", "fp16", paths, labels, ref, out, tol)


# Elementwise limits that a swap of margin 5 stays inside: the two flips below differ only in their margin.
WIDE = Tolerance(atol=10.0, rtol=0.0, min_cosine=0.0, min_top1_agreement=FP16.min_top1_agreement, max_accuracy_drop=FP16.max_accuracy_drop,
                 confident_margin=FP16.confident_margin)


def test_a_confident_flip_fails_even_above_the_agreement_rate():
    c = _flip_case(margin=5.0)
    assert c.top1_agreement == 0.995 >= FP16.min_top1_agreement
    assert not c.passed and any("confident clip(s) flipped" in r for r in c.reasons) and "clip0.mp4" in c.failed_clips
    assert c.clips[0].margin == 5.0 and "reference margin 5" in c.clips[0].problems[-1]
    # inside every elementwise limit, the confident flip alone fails it
    wide = _flip_case(margin=5.0, tol=WIDE)
    assert not wide.passed and wide.reasons == ["1 confident clip(s) flipped (reference margin over 2)"] and wide.failed_clips == ["clip0.mp4"]


def test_a_near_tie_flip_does_not_fail():
    # a swap of 0.04 is inside FP16's atol (0.05): the flip is the only thing that happened to the clip
    c = _flip_case(margin=0.04)
    assert c.max_abs == pytest.approx(0.04) and c.max_abs <= FP16.atol and c.top1_agreement == 0.995
    assert c.passed and not c.reasons and not c.failed_clips and c.clips[0].passed and not c.clips[0].top1_agrees
    assert "reference margin 0.04" in c.clips[0].problems[-1]  # still shown, as a note on the clip
    assert c.clips[0].reference_prob == pytest.approx(np.exp(0.04) / (np.exp(0.04) + 1 + 2 * np.exp(-3.0)), rel=1e-5)
    # the same near-tie under limits where a margin-5 swap fails only as confident: it passes there too
    assert _flip_case(margin=0.04, tol=WIDE).passed


def test_mcnemar_exact_p_value_by_hand():
    from parity.compare import mcnemar_p

    labels = [0] * 10
    ref = np.zeros((10, 2), np.float32)
    out = np.zeros((10, 2), np.float32)
    ref[:, 0] = 1.0  # the reference gets all 10 right
    out[:7, 0], out[7:, 1] = 1.0, 1.0  # the backend gets 3 wrong: b = 3, c = 0
    # two-sided exact: 2 * P(X <= 0 | n=3, p=1/2) = 2 * 1/8 = 0.25
    assert mcnemar_p(ref, out, labels) == pytest.approx(0.25)
    out[7:, 0], out[7:, 1] = 1.0, 0.0
    out[0] = [0.0, 1.0]  # b = 1
    ref[1] = [0.0, 1.0]
    out[1] = [1.0, 0.0]  # c = 1: 2 * P(X <= 1 | n=2) = 2 * 3/4 -> 1
    assert mcnemar_p(ref, out, labels) == 1.0


def test_one_ranking_of_the_worst_clips_for_repro_and_localize():
    """The repro bundle's heap (rows as they stream) and --localize (a comparison) rank clips by one rule."""
    from types import SimpleNamespace

    from parity.compare import clip_verdict, worst_clips, worst_rows
    from parity.run import REPRO_CLIPS, Collector

    ref, labels = _logits(n=8)
    ref[5] = ref[2]  # clips 2 and 5 tie: the earlier is worse
    out = ref.copy()
    out[1, 0] += 0.01  # a little outside
    out[2, 0] += 0.5
    out[5, 0] += 0.5
    out[3, 1] = np.nan  # the worst
    top = int(np.argmax(ref[4]))
    ref[4, (top + 1) % 4] = ref[4, top] - 1e-4  # a near tie that flips within tolerance: breaks, but ranks last
    out[4] = ref[4]
    out[4, (top + 1) % 4] = ref[4, top] + 1e-4
    comparison = _compare(ref, out, labels)
    assert clip_verdict(ref[0], out[0], FP32) is None and clip_verdict(ref[4], out[4], FP32) is not None

    lane = SimpleNamespace(name="b", against="ref", backend=SimpleNamespace(name="b", precision="fp32"))
    cfg = SimpleNamespace(tolerance_for=lambda *_: FP32)
    collector = Collector(SimpleNamespace(compared=[lane]), cfg, None)
    for i, path in enumerate(c.path for c in comparison.clips):
        item = SimpleNamespace(clip=SimpleNamespace(path=path, label=labels[i]), sha256="", index=i, ok=True, error=None,
                               tensor=np.zeros((1, 2, 3, 4, 4), np.float32))
        collector.admit(item)
        collector.on_clip(item, {"ref": ref[i], "b": out[i]})
    repro = [path for _, path, *_ in collector.repro()]
    ranked = [c.path for c in worst_clips(comparison)]
    assert repro == ranked[:REPRO_CLIPS] == ["clip3.mp4", "clip2.mp4", "clip5.mp4", "clip1.mp4"]
    assert ranked[4] == "clip4.mp4" and worst_clips(comparison, 1)[0].path == repro[0]  # what --localize picks
    assert [f"clip{i}.mp4" for i in worst_rows(ref, out, FP32)] == ranked  # what `parity localize` picks from rows


def test_every_reason_has_its_code():
    from parity.compare import Reason

    ref, labels = _logits()
    out = ref.copy()
    out[0] = np.roll(ref[0], 1) * 1.5  # a confident flip, far outside tolerance
    out[1, 0] = np.inf
    c = _compare(ref, out, labels, Tolerance(**{**FP32.to_dict(), "min_top1_agreement": 0.99}))
    assert len(c.reason_codes) == len(c.reasons) and c.reason_codes == [
        Reason.NONFINITE, Reason.OUTSIDE_TOLERANCE, Reason.TOP1_AGREEMENT, Reason.CONFIDENT_FLIP, Reason.ACCURACY_DROP]

"""What every command shares: the exit codes, one-line messages, and a run's verdict in the terminal and the report."""
from __future__ import annotations

import sys

from .. import summary as markdown
from ..conclusion import lines as conclusion
from ..report import write_report
from ..signals import check_interrupted

EXIT_PASS, EXIT_FAIL, EXIT_HARNESS = 0, 1, 2


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finish(result, report_dir, summary_md: str | None = None) -> int:
    check_interrupted()  # an interrupted run reports nothing, whatever a library made of the Ctrl-C
    html = write_report(result, report_dir)
    if summary_md:
        markdown.write(result, summary_md, html)
    print(summary(result))
    print(f"report: {html}")
    if result.problems:
        for problem in result.problems:
            say(f"parity: error: {problem}")
        return EXIT_HARNESS
    return EXIT_PASS if result.verdict == "pass" else EXIT_FAIL


def summary(result) -> str:
    lines = conclusion(result)  # the same lines head the report and the Markdown summary
    lines += [f"  note: {n}" for n in result.notes if n.startswith("reference ")]
    lines += [f"  {n}" for n in result.notes if n.startswith("warning: ")]
    shard = (result.run or {}).get("shard")
    if shard:
        lines.append(f"  shard {shard['index']}/{shard['count']}: {len(result.clips)} of the {shard['clips_listed']} listed clips "
                     "(join the shards with `parity merge`)")
    for b in result.backends:
        if b.status != "ok":
            reason = b.reason if b.reason.startswith(b.status) else f"{b.status}: {b.reason}"
            lines.append(f"  {b.name:<20} {reason}")
    for c in result.comparisons:
        acc = "" if c.accuracy is None else f"  acc {c.accuracy:.3f} (ref {c.reference_accuracy:.3f})"
        state = "pass" if c.passed else "FAIL"
        lines.append(f"  {c.backend:<20} {state}  max_abs {c.max_abs:.3g}  cos_min {c.cosine_min:.6f}  top1 {c.top1_agreement:.3f}{acc}")
        for reason in c.reasons:
            lines.append(f"      - {reason}")
        for path in c.failed_clips[:10]:
            lines.append(f"      broke: {path}")
        if len(c.failed_clips) > 10:
            lines.append(f"      ... and {len(c.failed_clips) - 10} more clips")
    for clip in result.clips:
        if clip.status != "ok":
            lines.append(f"  skipped clip: {clip.error}")
    for a in result.preprocessing_attribution:
        lines.append(f"  preprocessing {a['variant']} vs {result.preprocess['variant']}: max_abs {a['max_abs']:.3g}, "
                     f"{a['top1_flips']} of {a['clips']} top-1 classes flip on the reference")
    hop = result.first_failing_hop
    if hop:
        lines.append(f"  first failing hop: {hop['from']} -> {hop['to']} (max_abs {hop['max_abs']:.3g}, top1 {hop['top1_agreement']:.3f})")
    decode, cache = result.run.get("decode"), result.run.get("tensor_cache")
    if decode:
        cached = f", tensor cache {cache['entries']} entries, {cache['bytes'] / 2**20:.1f} MiB" if cache else ""
        extra = "".join(f", {label} {decode[key]}" for key, label in (("saved_inputs", "saved inputs"), ("timeouts", "past the decode time limit"),
                                                                        ("cache_rejected", "cache entries rejected")) if decode.get(key))
        lines.append(f"  clips: {decode['clips']}, decoded {decode['decoded']}, from cache {decode['cache_hits']}{extra}{cached}")
    return "\n".join(lines)

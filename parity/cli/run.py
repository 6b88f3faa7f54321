"""Commands that judge: run, merge (shards), golden save, compare-releases."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import golden, pvconfig
from ..artifacts import ArtifactCache
from ..backends import BACKENDS
from ..baseline import compare_releases
from ..config import RunConfig, dump_config
from ..errors import HarnessError
from ..merge import merge_reports
from ..run import run
from .args import RUN_EPILOG, add_run_args
from .common import EXIT_PASS, finish, say


def add_run(sub) -> None:
    p = sub.add_parser("run", help="compare backends on a model and clips; exit 1 when parity breaks", epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)


def cmd_run(args) -> int:
    cfg = RunConfig.from_args(args, BACKENDS)
    pv = pvconfig.apply(cfg)  # the run's one reading of --pv-config: printed here, passed down for the run to use
    if pv is not None:
        say(pv.line())
    result = run(cfg, cache=ArtifactCache(args.cache) if args.cache else None, threads=args.threads, shard=args.shard, pv=pv)
    if args.write_config:
        try:
            target = Path(args.write_config)
            target.write_text(dump_config(cfg, None if args.absolute_paths else target.parent))
        except OSError as exc:
            raise HarnessError(f"{args.write_config}: cannot write the config: {exc.strerror or exc}") from None
        say(f"wrote {args.write_config}: run it as a gate with `pytest --parity-config {args.write_config}`")
    return finish(result, cfg.report, args.summary_md)


def add_merge(sub) -> None:
    p = sub.add_parser("merge", help="join the reports of `parity run --shard i/N` into one report and one verdict")
    p.add_argument("shards", nargs="+", help="the shards' report folders")
    p.add_argument("--report", required=True, help="report folder to write")
    p.add_argument("--summary-md", metavar="FILE", help="also write a short Markdown summary")


def cmd_merge(args) -> int:
    return finish(merge_reports(args.shards, args.report), args.report, args.summary_md)


def add_compare_releases(sub) -> None:
    p = sub.add_parser("compare-releases", help="the saved reports of several releases side by side, oldest first")
    p.add_argument("folders", nargs="+", help="report folders of `parity run`, oldest first")


def cmd_compare_releases(args) -> int:
    print(compare_releases(args.folders), end="")
    return EXIT_PASS


def add_golden(sub) -> None:
    p = sub.add_parser("golden", help="golden outputs: store a run's reference logits to gate later releases")
    gold_sub = p.add_subparsers(dest="golden_command", required=True)
    save = gold_sub.add_parser("save", help="store the reference logits of a report folder")
    save.add_argument("report_dir")
    save.add_argument("--to", required=True, help="golden folder to write")


def cmd_golden(args) -> int:
    folder = golden.save(args.report_dir, args.to)
    meta = golden.Golden.load(folder).meta
    print(f"saved golden outputs of {meta['reference']} for {len(meta['clips'])} clips to {folder}")
    return EXIT_PASS


COMMANDS = {"run": (add_run, cmd_run), "merge": (add_merge, cmd_merge), "compare-releases": (add_compare_releases, cmd_compare_releases),
            "golden": (add_golden, cmd_golden)}

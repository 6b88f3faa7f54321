"""The pytest gate of pptsm-parity, registered by ``parity.pytest_plugin`` when ``--parity-config`` is given.

``pytest --parity-config parity.toml`` turns a parity run into test items: one per
(backend, clip), one per backend for the whole set (``NAME[set]``: agreement, accuracy, confident
flips, NaN/Inf, errors) and one for the run's verdict (``verdict``). The items only show what
``verdict.judge`` decided, in its words; none re-derives a rule, so the session fails exactly when
``parity run`` would (``verdict`` fails with every reason; each backend's items with its own).
The run itself happens once, at the first item (a run that raised is remembered, and every item
reports that error); the HTML report is written when the session finishes. Works with
``--junitxml``, ``-k`` and ``-x``. What runs is chosen by ``parity.backends.select``, as for ``parity run``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from . import summary
from .artifacts import ArtifactCache
from .backends import BACKENDS, select
from .clips import load_clips
from .config import load_config_file
from .errors import HarnessError, one_line
from .golden import Golden
from .report import write_report
from .run import run

_RESULT = pytest.StashKey[object]()
_RUN_ERROR = pytest.StashKey[str]()
_CONFIG = pytest.StashKey[object]()
_PATH = pytest.StashKey[Path]()


class ParityFailure(Exception):
    """A comparison outside tolerance: reported as its message, not as a traceback."""


def configure(config, path: str) -> None:
    """The session is that gate alone: the config file is what pytest collects, so a run from a repository's root neither
    collects the repository's own tests nor reports "collected 0 items"."""
    try:
        cfg = load_config_file(path, BACKENDS)
    except HarnessError as exc:
        raise pytest.UsageError(f"--parity-config: {exc}") from None
    if config.getoption("parity_report"):
        cfg.report = config.getoption("parity_report")
    config.stash[_CONFIG] = cfg
    config.stash[_PATH] = Path(path).resolve()
    config.args[:] = [str(config.stash[_PATH])]


def pytest_collect_file(file_path, parent):
    if parent.config.stash.get(_PATH, None) == Path(file_path).resolve():
        return ParityConfigFile.from_parent(parent, path=Path(file_path), cfg=parent.config.stash[_CONFIG])
    return None


class ParityConfigFile(pytest.File):
    def __init__(self, *, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg

    def collect(self):
        try:
            yield from self._items()
        except HarnessError as exc:
            raise self.CollectError(f"--parity-config: {exc}") from None

    def _items(self):
        cfg = self.cfg
        golden = Golden.load(cfg.golden) if cfg.golden else None
        compared = [lane.name for lane in select(cfg, golden.name if golden else None).compared]
        clips = load_clips(cfg.clips) if cfg.clips else golden.clips()
        root = Path(cfg.clips).parent if cfg.clips and Path(cfg.clips).is_file() else None
        for backend in compared:
            for clip in clips:
                path = clip.path
                shown = path.relative_to(root) if root and path.is_relative_to(root) else path.name
                yield ParityItem.from_parent(self, name=f"{backend}[{shown}]", backend=backend, clip=str(path), kind="clip")
            yield ParityItem.from_parent(self, name=f"{backend}[set]", backend=backend, clip=None, kind="set")
        yield ParityItem.from_parent(self, name="verdict", backend=None, clip=None, kind="verdict")


def _fail(failures) -> None:
    if failures:
        raise ParityFailure("; ".join(f.text for f in failures))


class ParityItem(pytest.Item):
    def __init__(self, *, backend: str | None, clip: str | None, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.backend, self.clip, self.kind = backend, clip, kind

    def _result(self):
        stash = self.config.stash
        if _RUN_ERROR in stash:
            raise ParityFailure(stash[_RUN_ERROR])
        if _RESULT not in stash:
            cache_dir = self.config.getoption("parity_cache", default=None)
            try:
                stash[_RESULT] = run(stash[_CONFIG], cache=ArtifactCache(cache_dir) if cache_dir else None)
            except HarnessError as exc:
                stash[_RUN_ERROR] = f"the parity run could not run: {exc}"
                raise ParityFailure(stash[_RUN_ERROR]) from None
            except Exception as exc:  # a bug: reported once per item, not re-run per item
                stash[_RUN_ERROR] = f"the parity run failed: {one_line(exc)}"
                raise
        return stash[_RESULT]

    def runtest(self):
        result = self._result()
        if self.kind == "verdict":  # the whole verdict, as `parity run` exits on it
            _fail(result.failures)
            return
        record = next(b for b in result.backends if b.name == self.backend)
        own = [f for f in result.failures if f.backend == self.backend]
        if record.status == "unavailable" and not own:
            pytest.skip(f"{self.backend} {record.reason}")
        comparison = next((c for c in result.comparisons if c.backend == self.backend), None)
        if comparison is None:  # it did not run, or nothing was compared (the reference failed): say why
            _fail(own or [f for f in result.failures if f.backend is None] or result.failures)
            pytest.skip(f"{self.backend} was not compared")
        if self.kind == "set":
            _fail(own)
            return
        clip_record = next(c for c in result.clips if Path(c.path).resolve() == Path(self.clip).resolve())
        if clip_record.status != "ok":
            pytest.skip(f"clip not compared: {clip_record.error}")
        clip = next(c for c in comparison.clips if Path(c.path).resolve() == Path(self.clip).resolve())
        if clip.path in comparison.failed_clips:
            tol = comparison.tolerance
            raise ParityFailure(
                f"{self.backend} vs {comparison.reference} on {self.clip}: max abs {clip.max_abs:.4g}, max rel {clip.max_rel:.4g}, "
                f"cosine {clip.cosine:.6f}; tolerance atol {tol['atol']:g}, rtol {tol['rtol']:g}, min_cosine {tol['min_cosine']}; "
                + "; ".join(clip.problems)
            )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ParityFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"parity: {self.name}"


def pytest_sessionfinish(session, exitstatus):
    result = session.config.stash.get(_RESULT, None)
    if result is None:
        return
    out = write_report(result, session.config.stash[_CONFIG].report)
    summary_md = session.config.getoption("parity_summary_md", default=None)
    if summary_md:
        summary.write(result, summary_md, out)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"parity report: {out} (verdict {result.verdict.upper()})")

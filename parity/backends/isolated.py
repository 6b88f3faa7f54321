"""Running a backend in its own process, so that a native crash (a segfault in a TensorRT build,
a oneDNN fuse pass, a driver) becomes that backend's error instead of the end of the run.

The worker builds the real runner (from the registry, or from a ``module:function`` factory)
and answers feed dicts over a pipe; the parent side is a Polygraphy runner like any other.
Workers are spawned, so a script that calls ``parity.run`` needs the usual
``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import tempfile
import uuid
from collections import OrderedDict

from polygraphy.backend.base import BaseRunner

from ..errors import one_line
from ..schedule import passive_wait
from ..signals import held, release
from .gpu import backend_environment
from .registry import BACKENDS


def _make(factory: str, art):
    if ":" in factory:
        module, func = factory.split(":", 1)
        return getattr(importlib.import_module(module), func)(art)
    return BACKENDS[factory].make_runner(art)


def _worker(conn, factory: str, art, log_path: str, env: dict | None = None, cpus: tuple[int, ...] = ()) -> None:
    os.environ.update(env or {})  # before anything imports paddle or CUDA; overrides what the parent had
    passive_wait()  # thread pools that sleep when done, unless the user said otherwise (parity.schedule)
    if cpus:  # a lane of the ``lanes`` schedule: its own cores, so lanes running at once never share one
        os.sched_setaffinity(0, cpus)
    # What native code prints (and its crash report) goes to a log the parent reads.
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)  # created here, so a killed parent leaves none
    os.dup2(log, 1)
    os.dup2(log, 2)
    release()  # started with SIGINT/SIGTERM held (parity.signals); what they now print goes to the log
    try:
        _serve(conn, factory, art)
    except (EOFError, OSError):  # the pipe broke: the parent is gone (killed), and nobody will read the log
        os.unlink(log_path)


def _serve(conn, factory: str, art) -> None:
    """Build the runner, say it is ready (or its error), then answer feeds until told to stop."""
    try:
        runner = _make(factory, art)
        runner.activate()
    except Exception as exc:  # reported to the parent as this backend's error
        conn.send(("error", one_line(exc)))
        return
    conn.send(("ready", _evidence(runner)))
    while True:
        try:
            message, feed = conn.recv()
        except MemoryError as exc:
            # The clip did not fit in this process: that is the answer to this call. The rest of the clip's
            # bytes are still in the pipe, so nothing after it can be read: say so, and stop.
            conn.send(("error", f"out of memory: the backend process could not hold the clip ({one_line(exc) if str(exc) else 'MemoryError'})"))
            break
        if message == "stop":
            break
        try:
            outputs = runner.infer(feed, check_inputs=False)
            conn.send(("ok", (OrderedDict((k, v) for k, v in outputs.items()), runner.inference_time, _evidence(runner))))
        except Exception as exc:
            conn.send(("error", one_line(exc)))
    runner.deactivate()


def _evidence(runner) -> dict | None:
    """What the runner can prove about what ran (a GPU backend's engine, its precisions, TensorRT's share)."""
    try:
        return runner.evidence() if hasattr(runner, "evidence") else None
    except Exception as exc:  # evidence is a record, never the backend's failure
        return {"error": one_line(exc)}


class IsolatedRunner(BaseRunner):
    """A runner whose work happens in a child process (spawned, so no state is shared)."""

    def __init__(self, factory: str, art, name: str | None = None, timeout: float | None = None, env: dict | None = None,
                 cpus: tuple[int, ...] = ()):
        super().__init__(name=name, prefix="isolated-runner")
        self.factory, self.art, self.timeout, self.cpus = factory, art, timeout or 3600.0, tuple(cpus)
        if env is None:
            env = backend_environment(factory)
        self.env = env

    def _died(self) -> RuntimeError:
        self._process.join(5)
        code = self._process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        if code == -signal.SIGKILL:
            how += ", as the kernel's out-of-memory killer sends"
        return RuntimeError(f"the backend process died ({how}){self._last_words()}")

    def _receive(self):
        if not self._conn.poll(self.timeout):
            self._process.kill()  # a hung backend is stopped, and is this backend's error
            raise RuntimeError(f"the backend process gave no answer within {self.timeout:g} s (--backend-timeout) and was killed")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            raise self._died() from None
        if status == "error":
            raise RuntimeError(payload)
        return payload

    def _last_words(self) -> str:
        """The crash report's most telling line, e.g. Paddle's 'FatalError: Segmentation fault ...'."""
        try:
            lines = [ln.strip() for ln in open(self._log, errors="replace").read().splitlines() if ln.strip()]
        except OSError:
            return ""
        fatal = [ln for ln in lines if "Error" in ln or "error" in ln]
        return f": {fatal[-1][:300]}" if fatal else ""

    def activate_impl(self):
        ctx = mp.get_context("spawn")
        self._log = os.path.join(tempfile.gettempdir(), f"parity-backend-{uuid.uuid4().hex}.log")  # the child creates it
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_worker, args=(child, self.factory, self.art, self._log, self.env, self.cpus),
                                    daemon=True)
        try:
            with held():  # a Ctrl-C lands once the child has all its orders, and ends it through deactivate
                self._process.start()
            child.close()
            self._evidence = self._receive()
        except BaseException:
            self.deactivate_impl()  # Polygraphy does not deactivate a runner whose activation failed
            raise

    def evidence(self) -> dict | None:
        """The child runner's evidence, as of its last answer."""
        return getattr(self, "_evidence", None)

    @property
    def pid(self) -> int | None:
        return self._process.pid if getattr(self, "_process", None) is not None else None

    def get_input_metadata_impl(self):
        raise NotImplementedError("isolated runners take feed dicts without input checks")

    def infer_impl(self, feed_dict):
        self.submit(feed_dict)
        return self.collect()

    def submit(self, feed_dict) -> None:
        """Send a feed without waiting for the answer (``collect`` takes it): lanes of the ``lanes`` schedule run at once."""
        try:
            self._conn.send(("infer", dict(feed_dict)))
        except OSError:  # a broken pipe: the process is gone, maybe after saying why (out of memory mid-clip)
            if self._conn.poll(0):
                self._receive()
            raise self._died() from None

    def collect(self):
        """The answer to the last ``submit``: the output dict (``inference_time`` is the child's own timing)."""
        outputs, self.inference_time, self._evidence = self._receive()
        return outputs

    @property
    def connection(self):
        """What ``multiprocessing.connection.wait`` waits on for this runner's answer."""
        return self._conn

    def deactivate_impl(self):
        if self._process.pid is not None:  # else its start failed: there is nothing to stop
            try:
                if self._process.is_alive():
                    self._conn.send(("stop", None))
                self._process.join(30)
            except (BrokenPipeError, OSError):
                pass
            if self._process.is_alive():
                self._process.kill()
        self._conn.close()
        with contextlib.suppress(FileNotFoundError):  # a child that saw this side gone first removed it
            os.unlink(self._log)

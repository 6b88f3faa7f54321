"""Your own deployed program as a backend: a command run per clip (or per batch), or logits it saved elsewhere.

Command templates take placeholders:
- ``{video}``: the clip's file, for programs that decode and preprocess themselves (the C++ deploy);
- ``{tensor}``: an ``.npy`` of the harness's own ``[1, T, 3, H, W]`` float32 input (a model of several inputs,
  another PaddleVideo helper's: an ``.npz`` with one array per input, keyed by the model's input names);
- ``{out}``: where the program writes its logits, ``.npy`` or whitespace-separated text;
- ``{list}`` (video files) or ``{tensor_list}`` (``.npy`` inputs) with ``{out_dir}``: the batch form, one
  call over a list file (one input per line), logits in ``out_dir/<line number, from 0>.npy`` or ``.txt``.

The command runs without a shell: the template is split into arguments once, and each
placeholder is replaced inside its argument, so a clip named with quotes, ``;`` or ``$(...)``
reaches the program as one argument and runs nothing. A template that asks for a shell
(``sh -c '...'``) must pass placeholders as separate arguments (``sh -c '... "$1"' _ {video}``).

A clip the program fails on (non-zero exit, timeout, nothing written, the wrong number of
logits) is that clip's error, with the command, the exit code and the last line of stderr;
the other clips and backends go on.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import HarnessError

PLACEHOLDERS = ("{video}", "{tensor}", "{out}", "{list}", "{tensor_list}", "{out_dir}")
SHELLS = ("sh", "bash", "zsh", "dash")
INPUTS = ("{video}", "{tensor}", "{list}", "{tensor_list}")
OUTPUTS = ("{out}", "{out_dir}")
PER_CLIP = ("{video}", "{tensor}", "{out}")
BATCH = ("{list}", "{tensor_list}", "{out_dir}")


def parse_command(name: str, template: str) -> list[str]:
    """The template as arguments; refused when a shell script would see a placeholder's text."""
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        raise HarnessError(f"--external {name}: cannot split the command: {exc}") from None
    if not argv:
        raise HarnessError(f"--external {name}: empty command")
    used = {p for p in PLACEHOLDERS if any(p in a for a in argv)}
    if "{out}" not in used and "{out_dir}" not in used:
        raise HarnessError(f"--external {name}: the command must write logits to {{out}} (or {{out_dir}} with {{list}})")
    if not used & {"{video}", "{tensor}", "{list}", "{tensor_list}"}:
        raise HarnessError(f"--external {name}: the command needs its input: {{video}}, {{tensor}}, {{list}} or {{tensor_list}}")
    if Path(argv[0]).name in SHELLS and "-c" in argv:
        script = argv[argv.index("-c") + 1] if argv.index("-c") + 1 < len(argv) else ""
        if any(p in script for p in PLACEHOLDERS):
            raise HarnessError(f"--external {name}: in a shell command, pass placeholders as their own arguments "
                               f"(sh -c '... \"$1\" ...' _ {{video}}), never inside the script text")
    per_clip, batch = sorted(used & set(PER_CLIP)), sorted(used & set(BATCH))
    if per_clip and batch:
        raise HarnessError(f"--external {name}: {per_clip[0]} is filled per clip and {batch[0]} per batch; use {{video}} or "
                           f"{{tensor}} with {{out}}, or {{list}} or {{tensor_list}} with {{out_dir}}")
    for arg in argv:
        inputs = [p for p in INPUTS if p in arg]
        outputs = [p for p in OUTPUTS if p in arg]
        if inputs and outputs:
            raise HarnessError(f"--external {name}: {outputs[0]} and {inputs[0]} in one argument ({arg!r}) would make the "
                               f"program's output path out of its input's; give each its own argument")
    return argv


def read_logits(path: Path) -> np.ndarray:
    if path.read_bytes()[:6] == b"\x93NUMPY":  # by content: np.save adds .npy to a name without it
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32).reshape(-1)
    return np.asarray(path.read_text().split(), dtype=np.float32)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


class ExternalRunner:
    """Runs a user's program per clip (or per batch with ``{list}``). It takes clips, not only tensors."""

    takes_clips = True

    def __init__(self, name: str, template: str, classes: int, timeout: float = 600.0, input_names: tuple[str, ...] = ()):
        self.name, self.template, self.classes, self.timeout = name, template, classes, timeout
        self.input_names = tuple(input_names)
        self.argv = parse_command(name, template)
        self.batch_form = any("{list}" in a or "{tensor_list}" in a for a in self.argv)
        self.tensors = any("{tensor}" in a or "{tensor_list}" in a for a in self.argv)
        self.inference_time = 0.0
        self.clip_errors: dict[str, str] = {}

    def activate(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="parity-external-")

    def deactivate(self):
        self._tmp.cleanup()

    def _call(self, values: dict[str, str], clip: str) -> str | None:
        argv = [self._fill(a, values) for a in self.argv]
        shown = " ".join(shlex.quote(a) for a in argv)[:300]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"{clip}: `{shown}` timed out after {self.timeout:g} s and was killed"
        except OSError as exc:
            return f"{clip}: `{shown}` could not start: {exc.strerror or exc}"
        if proc.returncode != 0:
            return f"{clip}: `{shown}` exited with code {proc.returncode}: {_last_line(proc.stderr) or 'no stderr'}"
        return None

    @staticmethod
    def _fill(arg: str, values: dict[str, str]) -> str:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        return arg

    def _row(self, out: Path, clip: str) -> tuple[np.ndarray | None, str | None]:
        if not out.is_file() or out.stat().st_size == 0:
            return None, f"{clip}: the program wrote no logits to {out.name}"
        try:
            row = read_logits(out)
        except (ValueError, OSError) as exc:
            return None, f"{clip}: cannot read the logits the program wrote: {exc}"
        if row.size != self.classes:
            return None, f"{clip}: the program wrote {row.size} logits; the model has {self.classes} classes"
        return row, None

    def infer_clips(self, items) -> np.ndarray:
        """``[len(items), classes]`` logits; a clip that failed gets a NaN row and its error in ``clip_errors``."""
        rows = np.full((len(items), self.classes), np.nan, dtype=np.float32)
        work = Path(tempfile.mkdtemp(dir=self._tmp.name))
        start = time.perf_counter()
        if self.batch_form:
            listing, out_dir = work / "list.txt", work / "out"
            out_dir.mkdir()
            inputs = [self._tensor(item, work, i) if self.tensors else str(item.clip.path) for i, item in enumerate(items)]
            listing.write_text("".join(f"{v}\n" for v in inputs))
            error = self._call({"list": str(listing), "tensor_list": str(listing), "out_dir": str(out_dir)},
                               f"{len(items)} clips from {items[0].clip.path}")
            for i, item in enumerate(items):
                out = next((p for p in (out_dir / f"{i}.npy", out_dir / f"{i}.txt") if p.is_file()), out_dir / f"{i}.npy")
                row, problem = (None, error) if error else self._row(out, str(item.clip.path))
                self._record(rows, i, item, row, problem)
        else:
            for i, item in enumerate(items):
                out = work / f"{i}.out.npy"  # np.save keeps this name; a text writer may use it too
                error = self._call({"video": str(item.clip.path), "tensor": self._tensor(item, work, i), "out": str(out)}, str(item.clip.path))
                row, problem = (None, error) if error else self._row(out, str(item.clip.path))
                self._record(rows, i, item, row, problem)
        self.inference_time = time.perf_counter() - start
        return rows

    def _record(self, rows, i, item, row, problem) -> None:
        if problem:
            self.clip_errors[str(item.clip.path)] = problem
        else:
            rows[i] = row

    def _tensor(self, item, work: Path, i: int) -> str:
        if not self.tensors:
            return ""
        if isinstance(item.tensor, tuple):  # several model inputs: one array per input name, in the model's order
            names = self.input_names if len(self.input_names) == len(item.tensor) else [f"input_{k}" for k in range(len(item.tensor))]
            path = work / f"{i}.input.npz"
            np.savez(path, **dict(zip(names, item.tensor)))
            return str(path)
        path = work / f"{i}.input.npy"  # never the path of {out}: a program that writes nothing must not leave its input as logits
        np.save(path, item.tensor)
        return str(path)


class SavedLogitsRunner:
    """Logits a device produced away from this machine: an ``.npz`` keyed by clip path or file name, or a CSV
    (clip, then the logits). A clip missing from the file is that clip's error; extra entries are listed."""

    takes_clips = True

    def __init__(self, name: str, path: str | Path, classes: int):
        self.name, self.path, self.classes = name, Path(path), classes
        self.inference_time = 0.0
        self.clip_errors: dict[str, str] = {}
        self.used: set[str] = set()

    def activate(self):
        if not self.path.is_file():
            raise HarnessError(f"{self.path}: logits file not found")
        self.table = load_logits_file(self.path)

    def deactivate(self):
        pass

    def extra(self) -> list[str]:
        return sorted(set(self.table) - self.used)

    def infer_clips(self, items) -> np.ndarray:
        rows = np.full((len(items), self.classes), np.nan, dtype=np.float32)
        for i, item in enumerate(items):
            path = str(item.clip.path)
            key = next((k for k in (path, os.path.abspath(path), item.clip.path.name, item.clip.path.stem) if k in self.table), None)
            if key is None:
                self.clip_errors[path] = f"{path}: not in {self.path.name}"
                continue
            self.used.add(key)
            row = np.asarray(self.table[key], dtype=np.float32).reshape(-1)
            if row.size != self.classes:
                self.clip_errors[path] = f"{path}: {self.path.name} has {row.size} logits for it; the model has {self.classes} classes"
                continue
            rows[i] = row
        return rows


def load_logits_file(path: str | Path) -> dict[str, np.ndarray]:
    """``{clip: logits}`` from an ``.npz`` keyed by clip (told by its content, whatever its name) or a CSV: clip, then
    its logits, one clip a line; ``#`` lines and blank lines are skipped. The first line is a header when every field
    after its first is not a number (``clip,c0,c1,...``); any other line that is not a clip and its numbers, and a clip
    given twice, is an error naming the file and the line. Every problem is one HarnessError line naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the logits file: {exc.strerror or exc}") from None
    if head == b"\x93NUMPY":
        raise HarnessError(f"{path}: a single .npy array has no clip names; give an .npz keyed by clip "
                           f"(np.savez(FILE, **{{clip: logits}})) or a CSV (clip, then its logits)")
    if head.startswith(b"PK\x03\x04") or path.suffix == ".npz":
        return _load_npz(path)
    return _load_csv(path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise HarnessError(f"{path}: not a readable .npz of logits keyed by clip: {' '.join(str(exc).split())[:200]}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_csv(path: Path) -> dict[str, np.ndarray]:
    import csv

    table: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    seen_a_line = False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                n = reader.line_num
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                first, seen_a_line = not seen_a_line, True
                clip, values = row[0].strip(), [v.strip() for v in row[1:]]
                if first and values and not any(_is_number(v) for v in values):
                    continue  # the header
                if not clip:
                    raise HarnessError(f"{path} line {n}: no clip before the logits")
                if not values:
                    raise HarnessError(f"{path} line {n}: {clip!r} has no logits after it (a line is: clip, then its logits)")
                bad = next((v for v in values if not _is_number(v)), None)
                if bad is not None:
                    what = "a header is only recognised on the first line, and only when no field after the first is a number"
                    raise HarnessError(f"{path} line {n}: {bad!r} is not a number; a line is the clip, then its logits ({what})")
                if clip in table:
                    raise HarnessError(f"{path} line {n}: {clip!r} is given again (first on line {first_line[clip]}); "
                                       f"each clip must appear once")
                table[clip], first_line[clip] = np.asarray([float(v) for v in values], dtype=np.float32), n
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: neither a CSV (UTF-8 text) nor an .npz; --logits takes an .npz keyed by clip "
                           f"or a CSV (clip, then its logits)") from None
    except csv.Error as exc:
        raise HarnessError(f"{path}: not a readable CSV: {exc}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the logits file: {exc.strerror or exc}") from None
    return table


def make_runner(name: str, spec: dict, classes: int, input_names: tuple[str, ...] = ()):
    if spec["kind"] == "command":
        return ExternalRunner(name, spec["command"], classes, spec.get("timeout") or 600.0, input_names)
    return SavedLogitsRunner(name, spec["file"], classes)

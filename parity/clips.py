"""Clip lists: UCF101-format ``path label`` lists, label-name files, or a folder of videos."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class ClipListError(HarnessError):
    """The clip list itself cannot be used (missing, unreadable, no entries)."""


@dataclass(frozen=True)
class Clip:
    """A video file, or a UCF101 frame folder (``img_00001.jpg`` …) with its frame count."""

    path: Path
    label: int | None = None
    num_frames: int | None = None
    error: str | None = None  # a list line that names no usable clip: reported as that clip's error

    @property
    def name(self) -> str:
        return self.path.name


SPECIAL_FILES = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"),
                 (stat.S_ISSOCK, "socket"))


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (``"character device"``, ``"FIFO"`` ...), else None.

    Reading such a file never ends (``/dev/zero``) or blocks forever (a FIFO with no writer), so it is
    refused before anything reads it. Symlinks are followed; a path that cannot be stat-ed is None
    (its own error comes when it is read).
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in SPECIAL_FILES if test(mode)), None)


class ClipList(list):
    """The clips of a list, each file once; ``notes`` says what was dropped (duplicate lines), one line each."""

    def __init__(self, clips=(), notes: list[str] | None = None):
        super().__init__(clips)
        self.notes: list[str] = notes or []
        self.duplicates = 0  # list lines dropped because their clip was listed before


def load_clips(source: str | Path) -> ClipList:
    """Read clips from a list file or a folder of videos.

    Both of PaddleVideo's list formats are read: ``path label`` (videos; a path without a
    suffix finds the video beside it, as PaddleVideo's ``suffix`` setting does) and
    ``frames_dir num_frames label`` (frame folders). Relative paths resolve against the list
    file's folder. A folder yields its video files (recursively) without labels.

    A clip listed more than once (the same file after resolving the path: symlinks, ``..``, another
    spelling) is kept at its first line only: counted once in agreement and accuracy, decoded once.
    The dropped lines are said in ``notes`` of the returned ``ClipList``.
    """
    source = Path(source)
    try:
        if source.is_dir():  # videos, or saved input tensors (.npy, as the repro bundle keeps them)
            clips = [Clip(p) for p in sorted(source.rglob("*")) if p.suffix.lower() in (*VIDEO_SUFFIXES, ".npy")]
            if not clips:
                raise ClipListError(f"{source}: folder holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            return ClipList(clips)
        if source.suffix.lower() in VIDEO_SUFFIXES:
            return ClipList([Clip(source)])  # one video given as --clips: that clip
        kind = special_kind(source)
        if kind:
            raise ClipListError(f"{source}: not a regular file ({kind}); give a clip list, a folder or a video")
        if not source.is_file():
            raise ClipListError(f"{source}: clip list or folder not found")
        text = source.read_bytes().decode("utf-8-sig", errors="replace")  # with or without a BOM
    except OSError as exc:
        raise ClipListError(f"{source}: cannot read the clip list: {exc.strerror or exc}") from None
    clips, first_line, dropped = ClipList(), {}, []
    for number, raw in enumerate(text.splitlines(), 1):  # \n and \r\n endings
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        clip = _parse_line(source, number, line)
        key = _identity(clip.path)
        if key in first_line:
            dropped.append((clip.path, number, first_line[key]))
            continue
        first_line[key] = number
        clips.append(clip)
    if not clips:
        raise ClipListError(f"{source}: clip list has no entries")
    if dropped:
        path, number, first = dropped[0]
        clips.duplicates = len(dropped)
        clips.notes.append(f"{source}: {len(dropped)} duplicate line(s) dropped, each clip is counted once "
                           f"(first: {path} on line {number}, listed on line {first})")
    return clips


def _identity(path: Path) -> str:
    """The file a list line names, whatever its spelling: the resolved absolute path."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a name too long, a symlink loop: its own error comes when it is read
        return os.path.abspath(path)


def _parse_line(source: Path, number: int, line: str) -> Clip:
    """One list line: ``path label``, ``frames_dir num_frames label`` or a bare ``path`` (unlabelled)."""
    parts = line.rsplit(maxsplit=2)
    label = num_frames = None
    if len(parts) == 3 and _is_int(parts[1]) and _is_int(parts[2]):
        path_text, num_frames, label = parts[0], int(parts[1]), int(parts[2])
    elif len(parts) >= 2 and _is_int(parts[-1]):
        path_text, label = line.rsplit(maxsplit=1)[0], int(parts[-1])
    elif len(parts) >= 2:
        path_text = line.rsplit(maxsplit=1)[0]
        where = f"{source} line {number}"
        return Clip(_resolve(source, path_text), error=f"{where}: the last field {parts[-1]!r} is not an integer label")
    else:
        path_text = line
    return Clip(_with_suffix(_resolve(source, path_text)), label, num_frames)


def _resolve(source: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else source.parent / path


def _with_suffix(path: Path) -> Path:
    """PaddleVideo lists may omit the video suffix; find the one file that has it."""
    try:
        if path.exists() or path.suffix.lower() in VIDEO_SUFFIXES:
            return path
        found = [path.with_name(path.name + s) for s in VIDEO_SUFFIXES if path.with_name(path.name + s).is_file()]
    except OSError:  # a name too long and the like: the clip's own error, when it is read
        return path
    return found[0] if len(found) == 1 else path


def load_label_names(path: str | Path | None) -> dict[int, str]:
    """Read a label-name file: one ``idx name`` pair per line."""
    if path is None or not Path(path).is_file():
        return {}
    names = {}
    for line in Path(path).read_bytes().decode("utf-8-sig", errors="replace").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and _is_int(parts[0]):
            names[int(parts[0])] = parts[1]
    return names


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True

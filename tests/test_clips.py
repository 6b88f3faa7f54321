from pathlib import Path

import pytest

from parity.clips import ClipListError, load_clips, load_label_names


def test_list_paths_resolve_against_list_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "sub" / "val.txt"
    listing.write_text("a/clip one.mp4 3\n\n# comment\n/abs/b.avi 0\nno_label.mp4\n")
    clips = load_clips(listing)
    assert [c.path for c in clips] == [tmp_path / "sub" / "a" / "clip one.mp4", Path("/abs/b.avi"), tmp_path / "sub" / "no_label.mp4"]
    assert [c.label for c in clips] == [3, 0, None]


def test_folder_of_videos(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [c.name for c in load_clips(tmp_path)] == ["x.mp4"]


def test_unusable_lists_raise(tmp_path):
    with pytest.raises(ClipListError, match="not found"):
        load_clips(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ClipListError, match="no entries"):
        load_clips(tmp_path / "empty.txt")


def test_label_names(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("0 move left\n1 move_right\n")
    assert load_label_names(f) == {0: "move left", 1: "move_right"}

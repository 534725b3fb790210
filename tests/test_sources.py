"""Listing sources and the deterministic train/val split."""

from __future__ import annotations

import json

import pytest

from ray_ingest.convert.sources import list_source, split_of
from ray_ingest.errors import SourceError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_class_folders_sorted_ids_and_ignored_files(tmp_path):
    for rel in ["zebra/1.jpg", "apple/2.JPG", "apple/sub/3.png", "mango/4.jpeg",
                "apple/notes.txt", "top.jpg", "README.md", "mango/.DS_Store"]:
        _touch(tmp_path / rel)
    listing = list_source(str(tmp_path))
    assert listing.class_names == ["apple", "mango", "zebra"]
    got = {i.relpath: i.label for i in listing.inputs}
    assert got == {"apple/2.JPG": 0, "apple/sub/3.png": 0, "mango/4.jpeg": 1, "zebra/1.jpg": 2}
    ignored = dict(listing.ignored)
    assert ignored["apple/notes.txt"] == "not an image file by its extension"
    assert ignored["top.jpg"] == "image outside any class folder"
    assert ignored["README.md"] == "not an image file by its extension"
    assert ignored["mango/.DS_Store"] == "hidden file"
    for i in listing.inputs:
        assert i.path == str(tmp_path / i.relpath)


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(SourceError, match="not a directory"):
        list_source(str(tmp_path / "nope"))
    with pytest.raises(SourceError, match="no class folders"):
        list_source(str(tmp_path))


def test_csv_with_header_names_and_relative_paths(tmp_path):
    _touch(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "list.csv").write_text("path,label\nimgs/a.jpg,dog\n/abs/b.jpg,cat\nimgs/c.jpg,dog\n")
    listing = list_source(str(tmp_path / "list.csv"))
    assert listing.class_names == ["cat", "dog"]
    assert [(i.path, i.relpath, i.label) for i in listing.inputs] == [
        (str(tmp_path / "imgs" / "a.jpg"), "imgs/a.jpg", 1),
        ("/abs/b.jpg", "/abs/b.jpg", 0),
        (str(tmp_path / "imgs" / "c.jpg"), "imgs/c.jpg", 1),
    ]


def test_csv_integer_labels_are_ids(tmp_path):
    (tmp_path / "l.csv").write_text("a.jpg,2\nb.jpg,0\n")
    listing = list_source(str(tmp_path / "l.csv"))
    assert listing.class_names == ["0", "1", "2"]
    assert [i.label for i in listing.inputs] == [2, 0]


def test_jsonl_list_and_errors_name_the_line(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text(json.dumps({"path": "x/1.jpg", "label": "b"}) + "\n\n"
                 + json.dumps({"path": "x/2.jpg", "label": "a"}) + "\n")
    listing = list_source(str(p))
    assert [(i.relpath, i.label) for i in listing.inputs] == [("x/1.jpg", 1), ("x/2.jpg", 0)]
    p.write_text('{"path": "a.jpg", "label": "x"}\n{"path": "b.jpg"}\n')
    with pytest.raises(SourceError, match=r"l.jsonl:2"):
        list_source(str(p))
    p.write_text('{"path": "a.jpg", "label": "x"}\nnot json\n')
    with pytest.raises(SourceError, match=r"l.jsonl:2: not valid JSON"):
        list_source(str(p))


def test_csv_duplicates_and_short_rows_are_errors(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("a.jpg,x\nb.jpg,y\na.jpg,y\n")
    with pytest.raises(SourceError, match=r"l.csv:3: 'a.jpg' is listed twice \(first on line 1\)"):
        list_source(str(p))
    p.write_text("a.jpg,x\nb.jpg\n")
    with pytest.raises(SourceError, match=r"l.csv:2: expected 'path,label'"):
        list_source(str(p))
    p.write_text("")
    with pytest.raises(SourceError, match="empty"):
        list_source(str(p))


def test_split_is_deterministic_and_close_to_fraction():
    names = [f"class{i % 7}/{i:05d}.jpg" for i in range(20000)]
    a = [split_of(n, 0, 0.1) for n in names]
    assert a == [split_of(n, 0, 0.1) for n in names]  # re-running gives the same split
    frac = a.count("val") / len(a)
    assert 0.09 < frac < 0.11
    b = [split_of(n, 1, 0.1) for n in names]
    assert a != b  # the seed changes the split
    assert all(split_of(n, 0, 0.0) == "train" for n in names[:100])
    # Growing the fraction only moves images from train to val (a stable hash, not a shuffle).
    c = [split_of(n, 0, 0.2) for n in names]
    assert all(y == "val" for x, y in zip(a, c) if x == "val")

"""Listing sources and the deterministic train/val split."""

from __future__ import annotations

import json
import os

import pytest

from ray_ingest import fs
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
    ignored = {x.path: (x.reason, x.message) for x in listing.ignored}
    assert ignored["apple/notes.txt"] == ("not-an-image-extension",
                                          "not an image file by its extension")
    assert ignored["top.jpg"] == ("outside-class-folder", "image outside any class folder")
    assert ignored["README.md"][0] == "not-an-image-extension"
    assert ignored["mango/.DS_Store"] == ("hidden-file", "hidden file")
    for i in listing.inputs:
        assert i.path == os.path.realpath(tmp_path / i.relpath)


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
    (tmp_path / "l.csv").write_text("a.jpg,2\nb.jpg,0\nc.jpg,1\n")
    listing = list_source(str(tmp_path / "l.csv"))
    assert listing.class_names == ["0", "1", "2"]
    assert [i.label for i in listing.inputs] == [2, 0, 1]


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


def test_csv_duplicate_lines_keep_the_first_and_are_reported(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("a.jpg,x\nb.jpg,y\na.jpg,y\nb.jpg,y\n")
    listing = list_source(str(p))
    assert [(i.relpath, i.label) for i in listing.inputs] == [("a.jpg", 0), ("b.jpg", 1)]
    assert [(x.path, x.reason, x.message) for x in listing.ignored] == [
        ("a.jpg", "duplicate", "line 3 ('a.jpg'): the same file as line 1 ('a.jpg') (kept); "
                               "labels differ: 'y' here, 'x' kept"),
        ("b.jpg", "duplicate", "line 4 ('b.jpg'): the same file as line 2 ('b.jpg') (kept)"),
    ]


def test_short_rows_and_empty_lists_are_errors(tmp_path):
    p = tmp_path / "l.csv"
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


def _reasons(listing):
    return {x.path: x.reason for x in listing.ignored}


def test_symlink_loop_is_entered_once_and_reported_once(tmp_path):
    src = tmp_path / "src"
    for i in range(8):
        _touch(src / "dots" / f"{i}.jpg")
        _touch(src / "stripes" / f"{i}.jpg")
    (src / "dots" / "loop").symlink_to(".")  # ln -s . dots/loop
    (src / "stripes" / "up").symlink_to("..")  # back to SRC itself
    listing = list_source(str(src))
    assert sorted(i.relpath for i in listing.inputs) == sorted(
        f"{c}/{i}.jpg" for c in ("dots", "stripes") for i in range(8))
    assert _reasons(listing) == {"dots/loop": "symlink-loop", "stripes/up": "symlink-loop"}
    messages = {x.path: x.message for x in listing.ignored}
    assert "link to 'dots', a folder that contains it" in messages["dots/loop"]
    assert messages["stripes/up"].startswith("link to the source folder itself")


def test_second_way_into_a_folder_and_a_file_linked_twice_are_duplicates(tmp_path):
    src = tmp_path / "src"
    _touch(src / "cats" / "a.jpg")
    _touch(src / "cats" / "b.jpg")
    (src / "kittens").symlink_to("cats")  # the same folder under a second name
    _touch(src / "dogs" / "d.jpg")
    (src / "dogs" / "z.jpg").symlink_to("../cats/a.jpg")  # one file in two class folders
    listing = list_source(str(src))
    assert [i.relpath for i in listing.inputs] == ["cats/a.jpg", "cats/b.jpg", "dogs/d.jpg"]
    assert _reasons(listing) == {"kittens": "duplicate", "dogs/z.jpg": "duplicate"}
    msg = {x.path: x.message for x in listing.ignored}
    assert msg["kittens"] == "the same folder as 'cats' (kept)"
    assert msg["dogs/z.jpg"] == ("the same file as cats/a.jpg (kept); labels differ: "
                                 "'dogs' here, 'cats' kept")


def test_links_leaving_the_source_are_followed_only_when_asked(tmp_path):
    outside = tmp_path / "elsewhere"
    _touch(outside / "x.jpg")
    _touch(outside / "y.jpg")
    src = tmp_path / "src"
    _touch(src / "cats" / "a.jpg")
    (src / "birds").symlink_to(outside)  # a class folder elsewhere
    (src / "cats" / "far.jpg").symlink_to(outside / "x.jpg")
    (src / "cats" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (src / "cats" / "ping.jpg").symlink_to("pong.jpg")
    (src / "cats" / "pong.jpg").symlink_to("ping.jpg")
    listing = list_source(str(src))
    assert [i.relpath for i in listing.inputs] == ["cats/a.jpg"]
    assert _reasons(listing) == {"birds": "link-outside-source", "cats/far.jpg":
                                 "link-outside-source", "cats/gone.jpg": "broken-link",
                                 "cats/ping.jpg": "symlink-loop", "cats/pong.jpg": "symlink-loop"}
    assert "--follow-links" in {x.path: x.message for x in listing.ignored}["birds"]
    listing = list_source(str(src), follow_links=True)
    assert [(i.relpath, i.path) for i in listing.inputs] == [
        ("birds/x.jpg", str(outside / "x.jpg")), ("birds/y.jpg", str(outside / "y.jpg")),
        ("cats/a.jpg", str(src / "cats" / "a.jpg"))]
    assert _reasons(listing) == {"cats/far.jpg": "duplicate", "cats/gone.jpg": "broken-link",
                                 "cats/ping.jpg": "symlink-loop", "cats/pong.jpg": "symlink-loop"}
    assert listing.class_names == ["birds", "cats"]


def test_one_file_named_several_ways_in_a_list_is_one_input(tmp_path):
    _touch(tmp_path / "a.jpg")
    (tmp_path / "x").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "a.jpg")
    p = tmp_path / "l.csv"
    p.write_text(f"a.jpg,0\n./a.jpg,0\nx/../a.jpg,1\n{tmp_path}/a.jpg,0\nalias,0\nb.jpg,1\n")
    listing = list_source(str(p))
    assert [(i.relpath, i.path, i.label) for i in listing.inputs] == [
        ("a.jpg", str(tmp_path / "a.jpg"), 0), ("b.jpg", str(tmp_path / "b.jpg"), 1)]
    dups = [(x.path, x.reason) for x in listing.ignored]
    assert dups == [("a.jpg", "duplicate"), ("a.jpg", "duplicate"),
                    (f"{tmp_path}/a.jpg", "duplicate"), ("alias", "duplicate")]
    assert all("the same file as line 1 ('a.jpg') (kept)" in x.message for x in listing.ignored)
    assert "labels differ: '1' here, '0' kept" in listing.ignored[1].message


def test_uri_lists_and_trees_are_normalised(tmp_path):
    for rel in ("cls/a.jpg", "cls/b.jpg", "other/c.jpg"):
        fs.write_bytes(f"memory://norm-test/{rel}", b"x")
    listing = list_source("memory://norm-test")
    assert [(i.relpath, i.path) for i in listing.inputs] == [
        ("cls/a.jpg", "memory://norm-test/cls/a.jpg"), ("cls/b.jpg", "memory://norm-test/cls/b.jpg"),
        ("other/c.jpg", "memory://norm-test/other/c.jpg")]
    fs.write_bytes("memory://norm-test/list.jsonl", b"".join(
        json.dumps({"path": p, "label": "k"}).encode() + b"\n"
        for p in ("cls/a.jpg", "./cls/a.jpg", "memory://norm-test/x/../cls/a.jpg", "cls/b.jpg")))
    listing = list_source("memory://norm-test/list.jsonl")
    assert [(i.relpath, i.path) for i in listing.inputs] == [
        ("cls/a.jpg", "memory://norm-test/cls/a.jpg"), ("cls/b.jpg", "memory://norm-test/cls/b.jpg")]
    assert [x.reason for x in listing.ignored] == ["duplicate", "duplicate"]


def test_integer_labels_must_be_dense_unless_num_classes_is_given(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("a.jpg,0\nb.jpg,1\nc.jpg,999999\nd.jpg,1\n")
    with pytest.raises(SourceError, match=r"l.csv:3: label 999999: integer labels are class ids "
                                          r"and must be dense, 0..2 .*id 2 is unused.*--num-classes"):
        list_source(str(p))
    p.write_text("path,label\na.jpg,0\nb.jpg,4\nc.jpg,7\n")
    with pytest.raises(SourceError, match=r"l.csv:4: label 7 is not below --num-classes 5"):
        list_source(str(p), num_classes=5)
    p.write_text("a.jpg,0\nb.jpg,4\n")
    listing = list_source(str(p), num_classes=5)
    assert listing.class_names == ["0", "1", "2", "3", "4"]
    assert [i.label for i in listing.inputs] == [0, 4]
    p.write_text("a.jpg,cat\nb.jpg,dog\n")
    with pytest.raises(SourceError, match="2 distinct labels, but --num-classes is 3"):
        list_source(str(p), num_classes=3)


def test_hidden_folders_are_reported_once_and_never_entered(tmp_path):
    src = tmp_path / "src"
    for rel in ["circle/a.jpg", "square/b.jpg", ".ipynb_checkpoints/c.jpg",
                ".ipynb_checkpoints/deep/d.jpg", "circle/.thumbs/x.jpg", ".git/objects/e.png"]:
        _touch(src / rel)
    (src / "square" / ".alias").symlink_to("../circle")  # a hidden link to a folder
    listing = list_source(str(src))
    assert listing.class_names == ["circle", "square"]  # not ".ipynb_checkpoints"
    assert {i.relpath: i.label for i in listing.inputs} == {"circle/a.jpg": 0, "square/b.jpg": 1}
    assert _reasons(listing) == {".git": "hidden-folder", ".ipynb_checkpoints": "hidden-folder",
                                 "circle/.thumbs": "hidden-folder",
                                 "square/.alias": "hidden-folder"}
    assert all("not entered" in x.message for x in listing.ignored)
    # Object stores have no folders to skip: their keys under a hidden prefix, once per folder.
    for rel in ("cls/a.jpg", ".cache/k.jpg", ".cache/x/y.jpg", "cls/.thumbs/t.jpg"):
        fs.write_bytes(f"memory://hidden-test/{rel}", b"x")
    listing = list_source("memory://hidden-test")
    assert [i.relpath for i in listing.inputs] == ["cls/a.jpg"]
    assert _reasons(listing) == {".cache": "hidden-folder", "cls/.thumbs": "hidden-folder"}


def test_list_entries_under_hidden_folders_are_ignored_and_make_no_class(tmp_path):
    _touch(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "list.csv").write_text(
        "path,label\n.ipynb_checkpoints/a.jpg,ghost\nimgs/.thumbs/b.jpg,dog\nimgs/a.jpg,dog\n"
        f"{tmp_path}/.cache/c.jpg,cat\n./imgs/.d.jpg,dog\n../elsewhere/.h/e.jpg,dog\n"
        "/outside/.hidden/f.jpg,cat\n")
    listing = list_source(str(tmp_path / "list.csv"))
    assert listing.class_names == ["cat", "dog"]  # no 'ghost'
    assert [i.relpath for i in listing.inputs] == ["imgs/a.jpg", "/outside/.hidden/f.jpg"]
    got = {x.path: (x.reason, x.message) for x in listing.ignored}
    assert got[".ipynb_checkpoints/a.jpg"] == (
        "hidden-folder", "line 2 ('.ipynb_checkpoints/a.jpg'): under the hidden folder "
                         "'.ipynb_checkpoints'")
    assert got["imgs/.thumbs/b.jpg"][0] == got[f"{tmp_path}/.cache/c.jpg"][0] == "hidden-folder"
    assert got["../elsewhere/.h/e.jpg"][0] == "hidden-folder"
    assert got["imgs/.d.jpg"][0] == "hidden-file"
    (tmp_path / "l2.csv").write_text(".x/a.jpg,dog\n")
    with pytest.raises(SourceError, match="every listed file is hidden"):
        list_source(str(tmp_path / "l2.csv"))


def test_a_file_name_that_is_not_utf8_is_listed_escaped(tmp_path):
    src = tmp_path / "src"
    _touch(src / "circle" / "ok.jpg")
    raw = os.fsencode(str(src / "circle")) + b"/bad\xff\xfe.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    with open(os.fsencode(str(src / "circle")) + b"/notes\xff.txt", "wb") as f:
        f.write(b"x")
    listing = list_source(str(src))
    bad = [i for i in listing.inputs if i.relpath != "circle/ok.jpg"]
    assert [i.relpath for i in bad] == ["circle/bad\\xff\\xfe.jpg"]  # printable, valid UTF-8
    assert os.fsencode(bad[0].path) == raw  # still the name to open
    assert _reasons(listing) == {"circle/notes\\xff.txt": "not-an-image-extension"}
    for i in listing.inputs:
        i.relpath.encode("utf-8")
        assert split_of(i.relpath, 0, 0.5) in ("train", "val")
    assert split_of(os.fsdecode(b"bad\xff.jpg"), 0, 0.5) in ("train", "val")  # never raises

"""``ray-ingest inspect``: the summary and class table, ``--verify`` (passing, and naming the file
and byte offset of a flipped byte, a truncated shard, a wrong index, a wrong sha256, counts that
disagree), and the ``--grid`` contact sheet."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from helpers import jpeg_bytes, random_rgb, stored
from ray_ingest.cli import main
from ray_ingest.errors import ManifestError, RecordCorruptError
from ray_ingest.format import manifest as mf
from ray_ingest.format.framing import read_index
from ray_ingest.format.verify import verify_output
from ray_ingest.tools.inspect import inspect_output, write_grid


@pytest.fixture(scope="module")
def dirty_output(ray_session, synth_tree, tmp_path_factory):
    """A small conversion with a rejected input and an ignored file."""
    from ray_ingest.convert import convert

    src = tmp_path_factory.mktemp("inspect-src")
    for cls in sorted(p.name for p in synth_tree.iterdir())[:3]:
        shutil.copytree(synth_tree / cls, src / cls)
    full = jpeg_bytes(random_rgb(40, 40, seed=1))
    (src / "circle" / "cut.jpg").write_bytes(full[: len(full) // 2])
    (src / "circle" / "notes.txt").write_text("not an image\n")
    out = tmp_path_factory.mktemp("inspect-out")
    convert(str(src), str(out), size=32, val_fraction=0.25, shard_size_mb=0.01,
            max_reject_fraction=0.1, overwrite=True)
    return out


@pytest.fixture()
def copy_of(tmp_path):
    def copy(path):
        dst = tmp_path / "copy"
        shutil.copytree(path, dst)
        return dst
    return copy


def _counts_by_reading(path):
    m = mf.read_manifest(str(path))
    return m, {split: Counter(r.class_text for r in stored(path, split)[1]) for split in m.splits}


def test_summary_table_and_rejects(dirty_output, capsys):
    assert main(["inspect", str(dirty_output)]) == 0
    text = capsys.readouterr().out
    m, counts = _counts_by_reading(dirty_output)
    assert "images per class (from the manifest):" in text
    for c, name in enumerate(m.class_names):
        row = re.search(rf"^\s+{name}\s+{c}\s+(\d+)\s+(\d+)\s+(\d+)$", text, re.M)
        assert row, text
        train, val, total = map(int, row.groups())
        assert (train, val) == (counts["train"][name], counts["val"][name])
        assert total == train + val
    total_row = re.search(r"^\s+total\s+(\d+)\s+(\d+)\s+(\d+)$", text, re.M)
    assert int(total_row.group(3)) == m.data["num_written"]
    for split in m.splits:
        shards = m.shards(split)
        assert (f"{split:<10} {m.num_records(split)} records in {len(shards)} shards"
                in text)
    assert "jpeg (quality 90), center-crop" in text
    assert re.search(r"corrupt-image\s+1\s+e\.g\. circle/cut\.jpg", text)
    assert "ignored: 1 file (not an image file by its extension x1)" in text


def test_verify_passes_and_counts_from_the_records(dirty_output, capsys):
    assert main(["inspect", str(dirty_output), "--verify", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    m, counts = _counts_by_reading(dirty_output)
    assert data["verify"]["ok"] and data["verify"]["num_records"] == m.data["num_written"]
    for split in m.splits:
        assert data["splits"][split]["class_counts"] == {n: counts[split][n]
                                                         for n in m.class_names}


def test_counts_of_a_manifest_without_them_come_from_reading(dirty_output, copy_of):
    out = copy_of(dirty_output)
    path = out / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    for split in data["splits"].values():
        del split["class_counts"]
    path.write_text(json.dumps(data))
    assert inspect_output(str(out)).class_counts == {"train": None, "val": None}
    insp = inspect_output(str(out), verify=True, progress=False)
    m, counts = _counts_by_reading(dirty_output)
    assert insp.class_counts["val"] == [counts["val"][n] for n in m.class_names]


def _shard_and_index(out, k=0):
    m = mf.read_manifest(str(out))
    shard = m.shards("train")[k]
    return out / shard.file, read_index((out / shard.index).read_text())


def test_verify_names_the_file_and_offset_of_a_flipped_byte(dirty_output, copy_of, capsys):
    out = copy_of(dirty_output)
    path, index = _shard_and_index(out, 1)
    offset, size = index[3]
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    assert main(["inspect", str(out), "--verify"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: corrupt TFRecord at byte offset {offset}: data CRC mismatch" in err
    with pytest.raises(RecordCorruptError) as e:
        verify_output(str(out), progress=False)
    assert (e.value.path, e.value.offset) == (str(path), offset)


def test_verify_names_a_truncated_shard(dirty_output, copy_of):
    out = copy_of(dirty_output)
    path, index = _shard_and_index(out, 0)
    offset, size = index[-2]
    data = path.read_bytes()
    path.write_bytes(data[: offset + size - 3])  # inside the second-last record
    with pytest.raises(RecordCorruptError, match="truncated record") as e:
        verify_output(str(out), progress=False)
    assert (e.value.path, e.value.offset) == (str(path), offset)
    path.write_bytes(data[: offset])  # at a record boundary: too few records
    with pytest.raises(RecordCorruptError, match=r"ends after \d+ records.*\(truncated\)") as e:
        verify_output(str(out), progress=False)
    assert (e.value.path, e.value.offset) == (str(path), offset)


def test_verify_names_an_index_line_that_disagrees(dirty_output, copy_of):
    out = copy_of(dirty_output)
    m = mf.read_manifest(str(out))
    idx = out / m.shards("val")[0].index
    lines = idx.read_text().splitlines()
    off, size = map(int, lines[1].split())
    lines[1] = f"{off + 1} {size}"
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=rf"{re.escape(str(idx))}: line 2 says record 1"):
        verify_output(str(out), progress=False)


def test_verify_checks_sha256_when_the_manifest_has_it(dirty_output, copy_of):
    out = copy_of(dirty_output)
    path = out / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    shards = [s for split in data["splits"].values() for s in split["shards"]]
    for s in shards:
        s["sha256"] = hashlib.sha256((out / s["file"]).read_bytes()).hexdigest()
    path.write_text(json.dumps(data))
    report = verify_output(str(out), progress=False)
    assert sum(s.sha256_checked for s in report.shards) == len(shards)
    assert f"sha256 of {len(shards)}" in report.summary_line()
    shards[-1]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=rf"{shards[-1]['file']}: SHA-256 is [0-9a-f]{{64}}, "
                                            "the manifest says 0{64}, though every record's "
                                            "CRC holds"):
        verify_output(str(out), progress=False)


def test_verify_names_counts_that_disagree_with_the_records(dirty_output, copy_of):
    out = copy_of(dirty_output)
    path = out / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    counts = data["splits"]["train"]["class_counts"]
    counts[0], counts[1] = counts[0] + 1, counts[1] - 1
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="'train' lists class_counts that its records "
                                            "disagree with"):
        verify_output(str(out), progress=False)
    data["splits"]["train"]["class_counts"] = [counts[0] - 1, counts[1] + 1] + counts[2:]
    data["num_rejected"] = 0
    data["num_inputs"] -= 1  # the manifest agreeing with itself, not with the rejects file
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="1 rejected inputs, the manifest says 0"):
        verify_output(str(out), progress=False)


def test_grid_is_a_labelled_contact_sheet(dirty_output, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["inspect", str(dirty_output), "--grid", str(png), "--per-class", "4"]) == 0
    assert "grid: 12 images of 3 classes" in capsys.readouterr().out
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    thumb, pad, label_w, title_h = 96, 4, 150, 24
    assert img.shape == (title_h + 3 * (thumb + pad) + pad, label_w + 4 * (thumb + pad) + pad, 3)
    m, _ = _counts_by_reading(dirty_output)
    for row in range(3):
        y = title_h + row * (thumb + pad)
        caption = img[y: y + thumb, :label_w]
        assert (caption.sum(axis=2) < 300).any()  # dark text: the class name
        for col in range(4):
            x = label_w + col * (thumb + pad)
            cell = img[y: y + thumb, x: x + thumb]
            assert cell.std() > 10  # an image, not the empty background
    # Fewer samples than asked: the missing cells stay empty.
    classes, shown = write_grid(str(dirty_output), str(png), per_class=60, max_classes=1)
    m = mf.read_manifest(str(dirty_output))
    assert (classes, shown) == (1, m.class_counts("train")[0] + m.class_counts("val")[0])


def _edit(out, change):
    path = out / mf.MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_shard_listed_twice_or_in_two_splits_is_refused(dirty_output, copy_of, tmp_path):
    from ray_ingest.read import read_records

    def twice(d):
        val = d["splits"]["val"]
        val["shards"] = val["shards"] + val["shards"][:1]
        val["num_records"] += val["shards"][0]["num_records"]
        val["num_bytes"] += val["shards"][0]["num_bytes"]
        val.pop("class_counts")
        d["num_written"] += val["shards"][0]["num_records"]
        d["num_inputs"] += val["shards"][0]["num_records"]

    def leaks(d):
        train, val = d["splits"]["train"], d["splits"]["val"]
        train["shards"] = train["shards"] + val["shards"][:1]
        train["num_records"] += val["shards"][0]["num_records"]
        train["num_bytes"] += val["shards"][0]["num_bytes"]
        train.pop("class_counts")
        d["num_written"] += val["shards"][0]["num_records"]
        d["num_inputs"] += val["shards"][0]["num_records"]

    val0 = mf.read_manifest(str(dirty_output)).shards("val")[0].file
    for change, where in ((twice, "twice"), (leaks, "in split 'train' and in split 'val'")):
        out = copy_of(dirty_output)
        _edit(out, change)
        message = rf"lists {val0} {where}; every shard and index file belongs to one split"
        with pytest.raises(ManifestError, match=message):
            verify_output(str(out), progress=False)
        with pytest.raises(ManifestError, match=message):
            read_records(str(out), "val")  # the reader refuses it too
        shutil.rmtree(out)


def test_verify_catches_class_names_renamed_swapped_repeated_or_added(dirty_output, copy_of):
    names = mf.read_manifest(str(dirty_output)).class_names
    cases = [
        (lambda d: d["class_names"].__setitem__(0, "kreis"),
         rf"image/class/text of class 0 is '{names[0]}', the manifest says 'kreis'"),
        (lambda d: d.update(class_names=[names[1], names[0]] + names[2:]),
         r"image/class/text of class \d is"),
        (lambda d: d.update(class_names=[names[0], names[0]] + names[2:]),
         rf"class_names lists '{names[0]}' more than once"),
        (lambda d: d.update(class_names=names[:2] + [7]), r"class_names must be a list of strings"),
        # An extra class whose counts agree (0 records): empty_classes says otherwise.
        (lambda d: [d["class_names"].append("zebra")] + [
            s["class_counts"].append(0) for s in d["splits"].values()],
         r"empty_classes is \[\], but the classes without a record are \['zebra'\]"),
    ]
    for change, message in cases:
        out = copy_of(dirty_output)
        _edit(out, change)
        with pytest.raises(ManifestError, match=message):
            verify_output(str(out), progress=False)
        shutil.rmtree(out)


def test_verify_catches_a_wrong_num_inputs(dirty_output, copy_of, capsys):
    out = copy_of(dirty_output)
    n = json.loads((out / mf.MANIFEST_NAME).read_text())["num_inputs"]
    _edit(out, lambda d: d.update(num_inputs=n + 5))
    assert main(["inspect", str(out), "--verify"]) == 2
    assert re.search(rf"num_inputs is {n + 5}, but num_written \d+ \+ num_rejected 1 = {n}",
                     capsys.readouterr().err)


@pytest.mark.parametrize("make", ["a file", "a manifest folder"])
def test_data_that_is_not_a_conversion_output_is_one_line(tmp_path, capsys, make):
    """DATA that is a file, or whose manifest.json is a folder: one line naming it, exit 2."""
    from ray_ingest.cli import main

    data = tmp_path / "data"
    if make == "a file":
        data.write_bytes(b"not a folder")
    else:
        (data / "manifest.json").mkdir(parents=True)
    assert main(["inspect", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a finished ray-ingest conversion output" in err[0], err

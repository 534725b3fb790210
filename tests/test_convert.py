"""End-to-end conversion on the session's Ray instance: outputs, bad inputs, atomic commit."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from helpers import (
    huge_jpeg_header,
    jpeg_bytes,
    own_lines,
    pil_bytes,
    random_rgb,
    run_cli,
    tf_feature_spec,
)
from ray_ingest.convert import ConvertOptions, convert
from ray_ingest.convert.sink import TFRecordDatasink
from ray_ingest.convert.sources import split_of
from ray_ingest.errors import ConversionError, find_error
from ray_ingest.format import keys, manifest as mf
from ray_ingest.format.commit import set_aside
from ray_ingest.format.example import decode_image_example
from ray_ingest.format.framing import read_index, scan_records
from ray_ingest.format.verify import verify_output

pytestmark = pytest.mark.usefixtures("ray_session")

BAD = {  # relpath -> reject reason
    "circle/zero.jpg": "empty-file",
    "circle/truncated.jpg": "corrupt-image",
    "square/text.jpg": "not-an-image",
    "square/bomb.jpg": "too-many-pixels",
}
CONVERTED = {  # relpath -> conversion note
    "circle/gray.jpg": "grayscale->rgb",
    "circle/cmyk.jpg": "jpeg:cmyk->rgb",
    "square/rgba.png": "png:rgba->rgb",
    "square/palette.png": "png:p->rgb",
}


@pytest.fixture()
def dirty_tree(synth_tree, tmp_path):
    """The synthetic tree plus every kind of bad and non-RGB input, and an ignored file."""
    root = tmp_path / "src"
    shutil.copytree(synth_tree, root)
    rgb = Image.fromarray(random_rgb(60, 80, seed=5))
    full = jpeg_bytes(random_rgb(60, 80))
    files = {
        "circle/zero.jpg": b"",
        "circle/truncated.jpg": full[: len(full) // 2],
        "square/text.jpg": b"this is not a JPEG\n",
        "square/bomb.jpg": huge_jpeg_header(40000, 40000),
        "circle/gray.jpg": pil_bytes(rgb.convert("L"), "JPEG"),
        "circle/cmyk.jpg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "square/rgba.png": pil_bytes(rgb.convert("RGBA"), "PNG"),
        "square/palette.png": pil_bytes(rgb.convert("P"), "PNG"),
        "square/notes.txt": b"ignored\n",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def _all_records(out):
    m = mf.read_manifest(str(out))
    got = {}
    for split in m.splits:
        for shard in m.shards(split):
            raw = (out / shard.file).read_bytes()
            views, _ = scan_records(raw, path=shard.file)
            assert len(views) == shard.num_records and len(raw) == shard.num_bytes
            index = read_index((out / shard.index).read_text())
            assert len(index) == len(views)
            assert sum(size for _, size in index) == len(raw)
            for v in views:
                rec = decode_image_example(v)
                assert rec.filename not in got, f"duplicate {rec.filename}"
                got[rec.filename] = (split, rec)
    return m, got


def test_convert_end_to_end_with_bad_inputs(dirty_tree, tmp_path):
    out = tmp_path / "out"
    report = convert(str(dirty_tree), str(out), size=32, val_fraction=0.25,
                     max_reject_fraction=0.05, seed=7)
    total = 160 + len(BAD) + len(CONVERTED)
    assert (report.num_inputs, report.num_rejected, report.num_written) == (
        total, len(BAD), total - len(BAD))
    assert report.num_ignored == 1
    assert "168 images in, 164 written, 4 rejected" in report.summary_line()
    m, got = _all_records(out)
    # Nothing lost, nothing twice.
    inputs = {str(p.relative_to(dirty_tree)) for p in dirty_tree.rglob("*") if p.is_file()}
    inputs.discard("square/notes.txt")
    assert set(got) == inputs - set(BAD)
    # Labels from class folders, sorted by name.
    names = sorted(p.name for p in dirty_tree.iterdir())
    assert m.class_names == names
    for rel, (split, rec) in got.items():
        assert rec.label == names.index(rel.split("/")[0])
        assert rec.class_text == rel.split("/")[0]
        assert (rec.height, rec.width, rec.channels, rec.image_format) == (32, 32, 3, "jpeg")
        assert split == split_of(rel, 7, 0.25)  # the deterministic split
    assert m.data["conversions"] == {v: 1 for v in CONVERTED.values()}
    assert m.data["reject_reasons"] == {r: 1 for r in BAD.values()}
    assert m.data["num_rejected"] == len(BAD) and m.data["num_inputs"] == total
    lines = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    rejected = {x["path"]: x["reason"] for x in lines if not x.get("ignored")}
    assert rejected == BAD
    assert all(x["message"] for x in lines)
    assert [x["path"] for x in lines if x.get("ignored")] == ["square/notes.txt"]
    assert not [n for n in os.listdir(out) if n.startswith(mf.STAGING_PREFIX)]


@pytest.mark.tf
def test_tensorflow_reads_converted_shards(synth_tree, tmp_path):
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "out"
    convert(str(synth_tree), str(out), size=40, val_fraction=0.2)
    spec = tf_feature_spec()
    files = sorted(str(p) for p in out.glob("*.tfrecord"))
    seen = set()
    for ex in tf.data.TFRecordDataset(files).map(lambda s: tf.io.parse_single_example(s, spec)):
        img = tf.io.decode_jpeg(ex[keys.ENCODED], channels=3)
        assert img.shape == (40, 40, 3)
        name = ex[keys.FILENAME].numpy().decode()
        assert ex[keys.CLASS_TEXT].numpy().decode() == name.split("/")[0]
        seen.add(name)
    assert len(seen) == 160


def test_raw_encoding_from_csv_source(synth_tree, tmp_path):
    rels = sorted(str(p.relative_to(synth_tree)) for p in synth_tree.rglob("*.jpg"))[:40]
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\n" + "".join(f"{synth_tree / r},{r.split('/')[0]}\n" for r in rels))
    out = tmp_path / "out"
    report = convert(str(csv), str(out), size=24, encoding="raw", val_fraction=0.0,
                     resize_mode="squash")
    assert report.num_written == 40
    m, got = _all_records(out)
    assert m.splits == ["train", "val"] and m.num_records("val") == 0
    assert m.encoding == "raw" and m.class_names == sorted({r.split("/")[0] for r in rels})
    from ray_ingest.convert.images import ImageSpec, process_image

    spec = ImageSpec(size=24, encoding="raw", resize_mode="squash")
    for rel in rels[:5]:
        _, rec = got[str(synth_tree / rel)]
        expected, _ = process_image((synth_tree / rel).read_bytes(), spec)
        assert rec.encoded == expected and rec.image_format == "raw"


def test_shards_roll_at_the_size_limit(synth_tree, tmp_path):
    out = tmp_path / "out"
    report = convert(str(synth_tree), str(out), size=48, encoding="raw", shard_size_mb=0.05,
                     val_fraction=0.1)
    m, got = _all_records(out)
    assert len(got) == 160
    train = m.shards("train")
    assert len(train) > 5
    for i, s in enumerate(train):
        assert s.file == f"train-{i:05d}-of-{len(train):05d}.tfrecord"
        assert s.num_bytes <= 50_000
    assert report.num_shards == len(train) + len(m.shards("val"))


def test_reject_limit_fails_without_manifest(dirty_tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as e:
        convert(str(dirty_tree), str(out), size=32)  # default limit 1 %; 4 of 168 fail
    msg = str(e.value)
    assert "4 of 168 inputs rejected" in msg and str(out / "rejects.jsonl") in msg
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tfrecord"))
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 5  # 4 rejects + 1 ignored


def test_cli_exit_code_and_summary(dirty_tree, tmp_path, capsys):
    from ray_ingest.cli import main

    out = tmp_path / "out"
    assert main(["convert", str(dirty_tree), str(out), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "4 of 168 inputs rejected" in err and "rejects.jsonl" in err
    assert main(["convert", str(dirty_tree), str(out), "--size", "32",
                 "--max-reject-fraction", "0.1", "--report-json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "168 images in, 164 written, 4 rejected" in text
    assert "rejected: corrupt-image x1, empty-file x1, not-an-image x1, too-many-pixels x1" in text
    assert json.loads((tmp_path / "r.json").read_text())["manifest"]["num_written"] == 164


def test_existing_output_refused_then_overwritten(synth_tree, tmp_path):
    out = tmp_path / "out"
    convert(str(synth_tree), str(out), size=24, shard_size_mb=0.02)
    before = sorted(p.name for p in out.glob("*.tfrecord"))
    with pytest.raises(ConversionError, match="--overwrite"):
        convert(str(synth_tree), str(out), size=24)
    convert(str(synth_tree), str(out), size=24, overwrite=True)  # one shard per split now
    after = sorted(p.name for p in out.glob("*.tfrecord"))
    assert len(before) > 2 and after == ["train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    m, got = _all_records(out)
    assert len(got) == 160


def test_failure_during_commit_leaves_no_manifest(synth_tree, tmp_path, monkeypatch):
    from ray_ingest.convert import sink

    out = tmp_path / "out"
    moves = []
    real_move = sink.fs.move

    def flaky_move(a, b):
        moves.append(b)
        if len(moves) == 3:
            raise OSError("disk full (injected)")
        real_move(a, b)

    monkeypatch.setattr(sink.fs, "move", flaky_move)
    with pytest.raises(OSError, match="injected"):
        convert(str(synth_tree), str(out), size=24, shard_size_mb=0.02)
    assert not out.exists()  # the shards moved in were taken out again, and the OUT it made
    monkeypatch.undo()
    # The same command again starts clean and commits (leftover shards are replaced).
    report = convert(str(synth_tree), str(out), size=24, shard_size_mb=0.02)
    m, got = _all_records(out)
    assert len(got) == 160 == report.num_written
    listed = {s.file for sp in m.splits for s in m.shards(sp)}
    assert {p.name for p in out.glob("*.tfrecord")} == listed


class FailingSink(TFRecordDatasink):
    """Fails in the second write task after writing part of its shard."""

    def write(self, blocks, ctx):
        if getattr(ctx, "task_idx", 0) >= 1:
            raise RuntimeError("write task failed (injected)")
        return super().write(blocks, ctx)


def test_failed_write_task_leaves_no_manifest_and_no_staging(synth_tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="injected"):
        convert(str(synth_tree), str(out), ConvertOptions(size=24, shard_size_mb=0.02),
                datasink_cls=FailingSink)
    assert not out.exists()  # no manifest, no shard, no staging: the empty OUT went too


def test_leftovers_of_an_interrupted_run_are_cleared(synth_tree, tmp_path):
    out = tmp_path / "out"
    stale = out / f"{mf.STAGING_PREFIX}deadbeef"
    stale.mkdir(parents=True)
    (stale / "train-t000000-x-0000.tfrecord").write_bytes(b"half")
    (out / "train-00000-of-00009.tfrecord").write_bytes(b"renamed before the crash")
    convert(str(synth_tree), str(out), size=24)
    assert not stale.exists()
    assert not (out / "train-00000-of-00009.tfrecord").exists()
    _, got = _all_records(out)
    assert len(got) == 160


def _rejects(out):
    return [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]


def test_symlink_loop_converts_each_image_once(synth_tree, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(synth_tree, src)
    first = sorted(p.name for p in src.iterdir())[0]
    (src / first / "loop").symlink_to(".")  # ln -s . <class>/loop
    out = tmp_path / "out"
    report = convert(str(src), str(out), size=16, encoding="raw", val_fraction=0.5)
    assert (report.num_inputs, report.num_written, report.num_ignored) == (160, 160, 1)
    m, got = _all_records(out)  # fails on any duplicate
    assert set(got) == {str(p.relative_to(synth_tree)) for p in synth_tree.rglob("*.jpg")}
    assert [(x["path"], x["reason"], x["ignored"]) for x in _rejects(out)] == [
        (f"{first}/loop", "symlink-loop", True)]
    assert m.data["ignored_reasons"] == {"symlink-loop": 1}


def test_cli_list_options_names_duplicates_and_checksums(synth_tree, tmp_path, capsys):
    import hashlib

    from ray_ingest.cli import main

    rels = sorted(str(p.relative_to(synth_tree)) for p in synth_tree.rglob("*.jpg"))[:12]
    lines = [f"{synth_tree / r},{3 * (i % 2)}" for i, r in enumerate(rels)]  # labels 0 and 3
    lines += [f"{synth_tree}/./{rels[0]},0", f"{synth_tree}/x/../{rels[1]},0"]
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "l.csv"), str(out), "--size", "16"]) == 2
    assert "l.csv:2: label 3: integer labels are class ids and must be dense" in \
        capsys.readouterr().err
    assert not out.exists()  # nothing left of the failed run
    assert main(["convert", str(tmp_path / "l.csv"), str(out), "--size", "16", "--num-classes",
                 "4", "--checksums", "--exif", "ignore"]) == 0
    assert "ignored: duplicate x2" in capsys.readouterr().out
    m, got = _all_records(out)
    assert len(got) == 12 and m.class_names == ["0", "1", "2", "3"]
    assert {rec.label for _, rec in got.values()} == {0, 3}
    assert m.data["exif_orientation"] == "ignore"
    for split in m.splits:
        for s in m.shards(split):
            assert s.sha256 == hashlib.sha256((out / s.file).read_bytes()).hexdigest()
    dups = [x for x in _rejects(out) if x["reason"] == "duplicate"]
    assert [x["path"] for x in dups] == [f"{synth_tree}/{rels[0]}", f"{synth_tree}/{rels[1]}"]
    assert "labels differ: '0' here, '3' kept" in dups[1]["message"]


def test_sideways_photos_are_stored_upright(tmp_path):
    from PIL import ImageOps

    from ray_ingest.convert.images import ImageSpec, resize_image

    src = tmp_path / "src"
    expected = {}
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        y, x = np.mgrid[0:30, 0:60]  # smooth ramps: each flip or turn changes them
        ramps = np.stack([x * 4, y * 8, np.full_like(x, 30 * o)], -1).astype(np.uint8)
        data = pil_bytes(Image.fromarray(ramps), "JPEG", quality=95, exif=exif.tobytes())
        (src / f"c{o % 2}").mkdir(parents=True, exist_ok=True)
        (src / f"c{o % 2}" / f"o{o}.jpg").write_bytes(data)
        upright = ImageOps.exif_transpose(Image.open(src / f"c{o % 2}" / f"o{o}.jpg"))
        expected[f"c{o % 2}/o{o}.jpg"] = resize_image(np.asarray(upright.convert("RGB")),
                                                      ImageSpec(size=24, resize_mode="squash"))
    out = tmp_path / "out"
    convert(str(src), str(out), size=24, encoding="raw", resize_mode="squash", val_fraction=0)
    m, got = _all_records(out)
    assert m.data["exif_orientation"] == "apply"
    for name, (_, rec) in got.items():
        pixels = np.frombuffer(rec.encoded, np.uint8).reshape(24, 24, 3).astype(int)
        assert np.abs(pixels - expected[name]).mean() < 3, name


# ---- what happens when ... -------------------------------------------------------------------


def test_hidden_folders_and_a_name_that_is_not_utf8_end_to_end(synth_tree, tmp_path, capsys):
    from ray_ingest.cli import main

    src = tmp_path / "src"
    shutil.copytree(synth_tree, src)
    first = sorted(p.name for p in src.iterdir())[0]
    image = sorted((src / first).glob("*.jpg"))[0].read_bytes()
    for rel in (".ipynb_checkpoints/x.jpg", f"{first}/.thumbs/y.jpg"):
        (src / rel).parent.mkdir()
        (src / rel).write_bytes(image)
    with open(os.fsencode(str(src / first)) + b"/bad\xff\xfe.jpg", "wb") as f:
        f.write(image)
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out), "--dry-run", "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "8 classes, 161 images" in text and ".ipynb" not in text.split("splits:")[0]
    assert f"hidden-folder x2: .ipynb_checkpoints, {first}/.thumbs" in text
    assert main(["convert", str(src), str(out), "--size", "16", "--encoding", "raw"]) == 0
    m, got = _all_records(out)
    assert m.class_names == sorted(p.name for p in synth_tree.iterdir())
    assert len(got) == 161 and got[f"{first}/bad\\xff\\xfe.jpg"][1].label == 0
    assert m.data["ignored_reasons"] == {"hidden-folder": 2}
    verify_output(str(out), progress=False)


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_a_failed_overwrite_keeps_the_finished_output(dirty_tree, synth_tree, tmp_path,
                                                      monkeypatch):
    out = tmp_path / "out"
    convert(str(synth_tree), str(out), size=24, shard_size_mb=0.02)  # several shards
    before = _snapshot(out)
    with pytest.raises(ConversionError, match="keeps its finished output") as e:
        convert(str(dirty_tree), str(out), size=24, overwrite=True)  # 4 of 168 rejected > 1 %
    assert str(out / mf.FAILED_REJECTS_NAME) in str(e.value)
    after = _snapshot(out)
    assert len(after.pop(mf.FAILED_REJECTS_NAME).splitlines()) == 5  # 4 rejects + 1 ignored
    assert after == before
    verify_output(str(out), progress=False)
    # A failure while committing (the disk full when the manifest is written) puts it back.
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mf, "write_manifest", full)
    with pytest.raises(ConversionError, match=rf"{out}: cannot write the conversion output "
                                              r"\(No space left on device\); nothing committed"):
        convert(str(synth_tree), str(out), size=24, encoding="raw", overwrite=True)
    after = _snapshot(out)
    after.pop(mf.FAILED_REJECTS_NAME)
    assert after == before and not list(out.glob(f"{mf.STAGING_PREFIX}*"))
    monkeypatch.undo()
    # A successful overwrite replaces everything: fewer shards, none of the old ones left.
    convert(str(synth_tree), str(out), size=24, overwrite=True)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [
        "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    assert not (out / mf.FAILED_REJECTS_NAME).exists()
    assert verify_output(str(out), progress=False).num_records == 160


def test_an_overwrite_killed_mid_commit_is_put_back_by_the_next_run(synth_tree, tmp_path):
    out = tmp_path / "out"
    convert(str(synth_tree), str(out), size=24, shard_size_mb=0.02)
    before = _snapshot(out)
    # What a kill between setting the old output aside and the new manifest leaves behind.
    set_aside(str(out), str(out / f"{mf.STAGING_PREFIX}dead" / mf.PREVIOUS_NAME))
    (out / "train-00000-of-00001.tfrecord").write_bytes(b"a new shard, moved in")
    with pytest.raises(ConversionError, match="already holds a finished conversion"):
        convert(str(synth_tree), str(out), size=24)
    assert _snapshot(out) == before and not list(out.glob(f"{mf.STAGING_PREFIX}*"))
    verify_output(str(out), progress=False)


class FullDiskSink(TFRecordDatasink):
    """Writes as ours on a disk that is full: every shard file fails to open (ENOSPC)."""

    def write(self, blocks, ctx):
        from ray_ingest.convert import sink as module

        real = module.fs.open_output

        def full(path):
            raise OSError(errno.ENOSPC, "No space left on device")

        module.fs.open_output = full
        try:
            return super().write(blocks, ctx)
        finally:
            module.fs.open_output = real


def test_a_full_disk_in_a_write_task_names_out_and_the_cause(synth_tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as e:
        convert(str(synth_tree), str(out), ConvertOptions(size=16), datasink_cls=FullDiskSink)
    assert str(find_error(e.value)) == (  # e.value: Ray's wrapper of it, from the write task
        f"{out}: cannot write the conversion output (No space left on device); nothing "
        f"committed, {out} holds what it held before")
    assert not out.exists()  # no staging, no lock: the empty OUT went too


@pytest.fixture()
def tmpfs(tmp_path):
    """``tmpfs(options)``: a folder on a tmpfs of its own (None where mounting is not allowed)."""
    mounted = []

    def mount(options):
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                           capture_output=True)
        if r.returncode != 0:
            return None
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_out_that_cannot_be_written_is_one_line_exit_2(synth_tree, tmp_path, tmpfs, capsys):
    from ray_ingest.cli import main

    ro = tmpfs("ro,size=1m")
    if ro is None:
        if os.geteuid() == 0:
            pytest.skip("no tmpfs mount here, and root writes through permissions")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    for out in (ro / "out", ro):  # a folder to make, one to write in
        assert main(["convert", str(synth_tree), str(out), "--size", "16"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ray-ingest convert: error: {out}: cannot write the conversion "
                              "output (") and err.count("\n") == 1, err
        assert ("Read-only file system" in err or "Permission denied" in err) and str(out) in err
    assert os.listdir(ro) == []


@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_2_and_the_old_output_stays(synth_tree, tmpfs):
    disk = tmpfs("size=2m")
    if disk is None:
        pytest.skip("no tmpfs mount here (test_a_full_disk_in_a_write_task covers the error)")
    out = disk / "out"
    convert(str(synth_tree), str(out), size=16)  # about 0.2 MB
    before = _snapshot(out)
    r = run_cli("convert", str(synth_tree), str(out), "--size", "96", "--encoding", "raw",
                "--overwrite")  # 4.4 MB of raw pixels
    lines = [x for x in own_lines(r.stdout) if not x.startswith("convert: ")]
    assert r.returncode == 2 and lines == [
        f"ray-ingest convert: error: {out}: cannot write the conversion output (No space left "
        f"on device); nothing committed, {out} holds what it held before"], r.stdout[-3000:]
    assert _snapshot(out) == before and not list(out.glob(f"{mf.STAGING_PREFIX}*"))
    verify_output(str(out), progress=False)


def test_one_class_and_a_class_whose_images_were_all_rejected_warn(synth_tree, tmp_path,
                                                                   caplog):
    first, second = sorted(p.name for p in synth_tree.iterdir())[:2]
    src = tmp_path / "src"
    shutil.copytree(synth_tree / first, src / first)
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        convert(str(src), str(tmp_path / "one"), size=16)
    assert [r.getMessage() for r in caplog.records] == [
        f"{src}: one class only ('{first}'): a classifier learns nothing from it"]
    (src / second).mkdir()
    (src / second / "bad.jpg").write_bytes(b"not a JPEG")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        report = convert(str(src), str(tmp_path / "two"), size=16, max_reject_fraction=0.5)
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'two'}: 1 of 2 classes have no images (all their inputs rejected, or none "
        f"listed): '{second}'"]
    assert report.manifest["empty_classes"] == [second]
    verify_output(str(tmp_path / "two"), progress=False)


def test_report_json_in_a_missing_folder_is_refused_before_the_work(synth_tree, tmp_path,
                                                                    capsys):
    from ray_ingest.cli import main

    out, report = tmp_path / "out", tmp_path / "nope" / "r.json"
    assert main(["convert", str(synth_tree), str(out), "--report-json", str(report)]) == 2
    assert capsys.readouterr().err == (f"ray-ingest convert: error: --report-json {report}: "
                                       f"the folder {tmp_path / 'nope'} does not exist\n")
    assert not out.exists()

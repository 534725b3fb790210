"""ShardSetWriter: a shard set written from a plain Python loop (no Ray), read back by our reader,
by TensorFlow and by verify; rollover, index, checksums, rejects, the lock, aborts, arguments."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import jpeg_bytes, random_rgb, tf_feature_spec
from ray_ingest.errors import ConfigError, ConversionError, ExampleDecodeError, RecordMismatchError
from ray_ingest.format import keys
from ray_ingest.format import manifest as mf
from ray_ingest.format.example import encode_image_example, parse_example
from ray_ingest.format.framing import OVERHEAD, read_index, scan_records
from ray_ingest.format.lock import read_lock
from ray_ingest.format.records import iter_records
from ray_ingest.format.verify import verify_output
from ray_ingest.format.writer import ShardSetWriter

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["cat", "dog", "owl"]


def _images(n, seed=0):
    """``(jpeg, label, filename, split, (height, width))`` of ``n`` images of varied sizes."""
    out = []
    for i in range(n):
        h, w = 20 + i % 7, 24 + (3 * i) % 11
        out.append((jpeg_bytes(random_rgb(h, w, seed + i)), i % 3, f"{CLASSES[i % 3]}/{i:03d}.jpg",
                    "val" if i % 5 == 0 else "train", (h, w)))
    return out


def _write(out, images, **kwargs):
    with ShardSetWriter(out=str(out), class_names=CLASSES, **kwargs) as w:
        for jpeg, label, name, split, _ in images:
            w.write_image(jpeg, label=label, filename=name, split=split)
    return w


def _snapshot(root: Path):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def test_a_plain_loop_writes_a_shard_set_that_our_reader_and_verify_accept(tmp_path, no_ray):
    out = tmp_path / "out"
    images = _images(30)
    w = _write(out, images)
    m = mf.read_manifest(str(out))
    assert m.variable_size and m.encoding == "jpeg" and m.class_names == CLASSES
    assert w.result == m.data and m.data["num_inputs"] == m.data["num_written"] == 30
    for split in keys.SPLITS:
        want = [(j, lab, n, hw) for j, lab, n, s, hw in images if s == split]
        got = list(iter_records(str(out), split))
        assert [(r.encoded, r.label, r.filename, (r.height, r.width)) for r in got] == want
        assert all(r.class_text == CLASSES[r.label] and r.channels == 3 for r in got)
        counts = [sum(1 for _, lab, _, _ in want if lab == c) for c in range(3)]
        assert m.class_counts(split) == counts
    report = verify_output(str(out), progress=False)
    assert report.num_records == 30
    sizes = m.data["image_sizes"]
    assert sizes["stored_as_is"] == 30 and sizes["reencoded"] == 0
    assert sizes["height"]["max"] == 26 and sizes["width"]["min"] == 24
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith((".tfrecord", ".idx"))) == [
        mf.MANIFEST_NAME, mf.REJECTS_NAME]  # no staging, no lock left


@pytest.mark.tf
def test_tensorflow_reads_what_the_writer_wrote(tmp_path):
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "out"
    images = _images(12)
    _write(out, images, max_shard_bytes=10_000)
    m = mf.read_manifest(str(out))
    spec = tf_feature_spec()
    files = [str(out / s.file) for s in m.shards("train")]
    assert len(files) > 1
    got = [tf.io.parse_single_example(x, spec) for x in tf.data.TFRecordDataset(files)]
    want = [x for x in images if x[3] == "train"]
    assert len(got) == len(want)
    for ex, (jpeg, label, name, _, (h, w)) in zip(got, want):
        assert ex[keys.ENCODED].numpy() == jpeg
        assert ex[keys.LABEL].numpy() == label and ex[keys.FILENAME].numpy().decode() == name
        assert (ex[keys.HEIGHT].numpy(), ex[keys.WIDTH].numpy()) == (h, w)
        assert tf.io.decode_jpeg(ex[keys.ENCODED]).shape == (h, w, 3)


def test_shards_roll_over_by_bytes_with_their_index_and_sha256(tmp_path, no_ray):
    out = tmp_path / "out"
    _write(out, _images(40), max_shard_bytes=10_000, checksums=True)
    m = mf.read_manifest(str(out))
    shards = m.shards("train")
    assert len(shards) >= 3
    assert [s.file for s in shards] == [mf.shard_name("train", i, len(shards))
                                        for i in range(len(shards))]
    for s in shards + m.shards("val"):
        data = (out / s.file).read_bytes()
        assert len(data) == s.num_bytes <= 10_000
        assert s.sha256 == hashlib.sha256(data).hexdigest()
        views, _ = scan_records(data, path=s.file)
        assert len(views) == s.num_records
        offsets, pos = [], 0
        for v in views:
            offsets.append((pos, len(v) + OVERHEAD))
            pos += len(v) + OVERHEAD
        assert read_index((out / s.index).read_text()) == offsets
    assert verify_output(str(out), progress=False).num_records == 40


def test_an_exception_in_the_block_leaves_no_output_folder(tmp_path, no_ray):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the loop failed"):
        with ShardSetWriter(out=str(out), class_names=CLASSES, max_shard_bytes=10_000) as w:
            for jpeg, label, name, split, _ in _images(20):
                w.write_image(jpeg, label=label, filename=name, split=split)
            raise RuntimeError("the loop failed")
    assert not out.exists()  # no shards, no staging, no lock, and the folder it made went too


def test_an_exception_in_an_overwrite_leaves_the_previous_output_intact(tmp_path, no_ray):
    out = tmp_path / "out"
    _write(out, _images(20), max_shard_bytes=10_000, checksums=True)
    before = _snapshot(out)
    with pytest.raises(KeyboardInterrupt):
        with ShardSetWriter(out=str(out), class_names=CLASSES, overwrite=True) as w:
            w.write_image(_images(1, seed=9)[0][0], label=0, filename="new.jpg")
            raise KeyboardInterrupt
    assert _snapshot(out) == before and not list(out.glob(f"{mf.STAGING_PREFIX}*"))
    verify_output(str(out), progress=False)


def test_a_finished_output_is_refused_unless_overwrite_then_replaced(tmp_path, no_ray):
    out = tmp_path / "out"
    _write(out, _images(30), max_shard_bytes=10_000)
    before = _snapshot(out)
    with pytest.raises(ConversionError, match=r"already holds a finished conversion .*"
                                              r"pass overwrite=True to replace it"):
        _write(out, _images(3))
    assert _snapshot(out) == before
    _write(out, _images(3, seed=5), overwrite=True)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [
        "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    assert verify_output(str(out), progress=False).num_records == 3


def test_a_second_writer_on_the_same_folder_is_refused_while_the_first_is_open(tmp_path,
                                                                                no_ray):
    out = tmp_path / "out"
    (jpeg, *_), = _images(1)
    with ShardSetWriter(out=str(out), class_names=CLASSES) as first:
        first.write_image(jpeg, label="owl", filename="a.jpg")
        second = ShardSetWriter(out=str(out), class_names=CLASSES, overwrite=True)
        with pytest.raises(ConversionError, match=rf"{re.escape(str(out))} is being written by "
                                                  rf"another conversion \(host .*run "
                                                  rf"{first.run_id}"):
            with second:
                pytest.fail("the second writer entered its block")
        assert read_lock(str(out)).run_id == first.run_id  # the refused one left it alone
        first.write_image(jpeg, label=1, filename="b.jpg")
    assert read_lock(str(out)) is None
    assert [r.filename for r in iter_records(str(out), "train")] == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("kwargs, said", [
    ({"class_names": []}, "class_names must be a non-empty list of non-empty strings, got []"),
    ({"class_names": "cat"}, "class_names must be a list of class names, got 'cat'"),
    ({"class_names": ["a", "b", "a"]}, "class_names lists 'a' more than once"),
    ({"encoding": "png"}, "encoding must be one of ('jpeg', 'raw'), got 'png'"),
    ({"size": 0}, "size must be an integer from 1 to 65535 or None, got 0"),
    ({"size": 32, "max_side": 64}, "max_side / short_side bound whole images (size None)"),
    ({"encoding": "raw"}, "encoding 'raw' needs a fixed size"),
    ({"quality": 101}, "quality must be a JPEG quality from 1 to 100 (encoding 'jpeg') or "
                       "None, got 101"),
    ({"max_shard_bytes": 100}, "max_shard_bytes must be an integer from 10000 to "
                               "10000000000, got 100"),
    ({"checksums": "yes"}, "checksums must be True or False, got 'yes'"),
    ({"max_reject_fraction": 1.5}, "max_reject_fraction must be a number in [0, 1], got 1.5"),
    ({"out": ""}, "out must be a folder path or URI, got ''"),
])
def test_bad_arguments_are_refused_at_construction(tmp_path, kwargs, said, no_ray):
    args = {"out": str(tmp_path / "out"), "class_names": CLASSES, **kwargs}
    with pytest.raises(ConfigError) as e:
        ShardSetWriter(**args)
    assert said in str(e.value)
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError):
        ShardSetWriter(str(tmp_path / "out"), CLASSES)  # keyword-only


def test_rejects_go_to_rejects_jsonl_and_the_manifest_counts(tmp_path, no_ray):
    out = tmp_path / "out"
    with ShardSetWriter(out=str(out), class_names=CLASSES) as w:
        for jpeg, label, name, split, _ in _images(10):
            w.write_image(jpeg, label=label, filename=name, split=split)
        w.reject("z.jpg", "corrupt", "truncated JPEG")
        w.reject("a.png", "unsupported", "not a JPEG")
    m = mf.read_manifest(str(out))
    assert (m.data["num_inputs"], m.data["num_written"], m.data["num_rejected"]) == (12, 10, 2)
    assert m.data["reject_reasons"] == {"corrupt": 1, "unsupported": 1}
    lines = [json.loads(x) for x in (out / mf.REJECTS_NAME).read_text().splitlines()]
    assert lines == [{"path": "a.png", "reason": "unsupported", "message": "not a JPEG"},
                     {"path": "z.jpg", "reason": "corrupt", "message": "truncated JPEG"}]
    verify_output(str(out), progress=False)


def test_over_the_reject_limit_nothing_is_committed(tmp_path, no_ray):
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"2 of 4 inputs rejected \(50.00%\), over "
                                              r"max_reject_fraction 0.1; no manifest written"):
        with ShardSetWriter(out=str(out), class_names=CLASSES, max_reject_fraction=0.1) as w:
            for jpeg, label, name, split, _ in _images(2):
                w.write_image(jpeg, label=label, filename=name, split=split)
            w.reject("x.jpg", "corrupt", "bad")
            w.reject("y.jpg", "corrupt", "bad")
    assert sorted(p.name for p in out.iterdir()) == [mf.REJECTS_NAME]  # the report only
    with pytest.raises(ConversionError, match="no record written"):
        with ShardSetWriter(out=str(tmp_path / "empty"), class_names=CLASSES):
            pass
    assert not (tmp_path / "empty").exists()


def test_prebuilt_records_are_checked_and_a_refused_one_is_not_written(tmp_path, no_ray):
    out = tmp_path / "out"
    (jpeg, _, _, _, (h, w)), = _images(1)

    def record(**changes):
        fields = dict(encoded=jpeg, image_format="jpeg", height=h, width=w, channels=3,
                      label=1, class_text="dog", filename="pre.jpg")
        return encode_image_example(**{**fields, **changes})

    with ShardSetWriter(out=str(out), class_names=CLASSES) as writer:
        writer.write(record())
        writer.write(parse_example(record(filename="msg.jpg")), split="val")  # a message
        refused = [
            (record(label=7), RecordMismatchError,
             "image/class/label is 7, the manifest has class ids 0..2"),
            (record(class_text="cat"), RecordMismatchError,
             "image/class/text of class 1 is 'cat', the manifest says 'dog'"),
            (record(image_format="raw"), RecordMismatchError,
             "image/format is 'raw', the manifest says 'jpeg'"),
            (record(height=h + 1), RecordMismatchError,
             f"the JPEG is {h}x{w}, the record says {h + 1}x{w}"),
            (b"not an example", ExampleDecodeError, "not one of our image records"),
        ]
        for bad, error, said in refused:
            with pytest.raises(error, match=re.escape(said)) as e:
                writer.write(bad)
            assert str(e.value).startswith(f"{out}: record 3: ")
        with pytest.raises(ConfigError, match=r"split must be one of \('train', 'val'\), got "
                                              r"'test'"):
            writer.write(record(), split="test")
        with pytest.raises(RecordMismatchError, match=r"input 3 \(x.jpg\): not a readable JPEG"):
            writer.write_image(b"\xff\xd8 not really", label=0, filename="x.jpg")
    m = mf.read_manifest(str(out))
    assert m.data["num_inputs"] == 2 and m.num_records("train") == m.num_records("val") == 1
    verify_output(str(out), progress=False)
    with pytest.raises(ConversionError, match="inside its with block only"):
        writer.write(record())


def test_fixed_size_raw_pixels_and_limits_of_whole_images(tmp_path, no_ray):
    out = tmp_path / "raw"
    with ShardSetWriter(out=str(out), class_names=CLASSES, encoding="raw", size=8) as w:
        for i in range(6):
            w.write_image(random_rgb(8, 8, i).tobytes(), label=i % 3, filename=f"{i}.raw")
        with pytest.raises(RecordMismatchError, match=r"191 raw pixel bytes of 8x8; this shard "
                                                      r"set stores 8x8x3 = 192 bytes"):
            w.write_image(bytes(191), label=0, filename="short.raw")
    m = mf.read_manifest(str(out))
    assert (m.height, m.width, m.encoding, m.data["resize_mode"]) == (8, 8, "raw", "as-given")
    assert verify_output(str(out), progress=False).num_records == 6
    whole = tmp_path / "whole"
    with ShardSetWriter(out=str(whole), class_names=CLASSES, max_side=25) as w:
        w.write_image(jpeg_bytes(random_rgb(20, 25)), label=0, filename="ok.jpg")
        with pytest.raises(RecordMismatchError, match=r"the JPEG is 20x26, over max_side 25"):
            w.write_image(jpeg_bytes(random_rgb(20, 26)), label=0, filename="big.jpg")
    assert mf.read_manifest(str(whole)).max_side == 25
    verify_output(str(whole), progress=False)


def test_the_readme_example_runs_as_printed(tmp_path, monkeypatch, no_ray):
    section = (REPO / "README.md").read_text().split("### Writing shards from your own loop", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    m = mf.read_manifest(str(tmp_path / "my-shards"))
    assert (m.data["num_written"], m.data["num_rejected"]) == (64, 1)
    assert len(m.shards("train")) > 1 and all(s.sha256 for s in m.shards("train"))
    verify_output(str(tmp_path / "my-shards"), progress=False)


def test_the_writer_imports_neither_ray_nor_tensorflow():
    code = ("import sys, ray_ingest.format.writer; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'tensorflow', 'torch'}),"
            " sorted(m for m in sys.modules if m.startswith(('ray_ingest.convert', "
            "'ray_ingest.read', 'ray_ingest.train'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] []"


def test_read_records_streams_the_written_shards(ray_session, tmp_path):
    import ray_ingest

    out = tmp_path / "out"
    _write(out, _images(30), max_shard_bytes=10_000)
    ds = ray_ingest.read_records(str(out), "train", crop=ray_ingest.CenterCrop(16))
    labels = []
    for batch in ds.iter_batches(batch_size=8, batch_format="numpy"):
        assert batch["image"].shape[1:] == (16, 16, 3)
        labels += batch["label"].tolist()
    assert sorted(labels) == sorted(lab for _, lab, _, s, _ in _images(30) if s == "train")


def test_a_write_that_fails_ends_the_writer_and_nothing_is_committed(tmp_path, monkeypatch):
    """A disk error in the middle of a record may leave part of it in the shard: the writer
    takes no more records and commits nothing, even when the loop catches the error."""
    import errno

    from ray_ingest.format.staging import StagingWriter

    out = tmp_path / "out"
    (jpeg, _, _, _, _), = _images(1)
    with pytest.raises(ConversionError, match="nothing committed"):
        with ShardSetWriter(out=str(out), class_names=CLASSES) as writer:
            writer.write_image(jpeg, label=0, filename="a.jpg")
            real = StagingWriter.write

            def full(self, split, record):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(StagingWriter, "write", full)
            with pytest.raises(ConversionError, match="No space left on device"):
                writer.write_image(jpeg, label=1, filename="b.jpg")
            monkeypatch.setattr(StagingWriter, "write", real)
            with pytest.raises(ConversionError, match="takes no more records"):
                writer.write_image(jpeg, label=1, filename="c.jpg")
    assert not out.exists()  # the writer made OUT: nothing of it is left

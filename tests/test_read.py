"""The streaming reader: content, manifest checks, corruption, shuffling, options."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from helpers import pixel_key as _key, stored as _stored
from ray_ingest.errors import (
    ConfigError,
    ExampleDecodeError,
    ManifestError,
    RecordCorruptError,
    find_error,
)
from ray_ingest.format import manifest as mf
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.example import encode_image_example
from ray_ingest.format.framing import frame_record, scan_records
from ray_ingest.read import ReadOptions, read_records
from ray_ingest.read.plan import plan_tasks

pytestmark = pytest.mark.usefixtures("ray_session")


def _rows(ds, **kw):
    images, labels = [], []
    for b in ds.iter_batches(batch_size=None, batch_format="numpy", **kw):
        images.append(b["image"])
        labels.append(b["label"])
    if not images:
        return np.zeros((0,)), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)


def _n(ds):
    """Rows actually streamed (``count()`` may answer from planning metadata alone)."""
    return sum(len(b["label"]) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))


def test_raw_reader_returns_exactly_what_was_converted(converted):
    path = converted["raw"]
    for split in ("train", "val"):
        m, stored = _stored(path, split)
        images, labels = _rows(read_records(str(path), split))
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == np.int64 and len(labels) == len(stored) == m.num_records(split)
        expected = sorted(_key(r.label, np.frombuffer(r.encoded, np.uint8)) for r in stored)
        assert sorted(_key(lab, img) for lab, img in zip(labels, images)) == expected


def test_pixels_match_the_source_images(converted, synth_tree):
    from ray_ingest.convert.images import ImageSpec, process_image

    m, stored = _stored(converted["raw"], "train")
    spec = ImageSpec(size=32, encoding="raw")
    images, labels = _rows(read_records(str(converted["raw"])))
    got = {_key(lab, img) for img, lab in zip(images, labels)}
    for r in stored[:10]:
        pixels, _ = process_image((synth_tree / r.filename).read_bytes(), spec)
        assert _key(r.label, np.frombuffer(pixels, np.uint8)) in got
        assert m.class_names[r.label] == r.filename.split("/")[0]


@pytest.mark.tf
def test_jpeg_reader_decodes_like_tensorflow(converted):
    tf = pytest.importorskip("tensorflow")
    path = converted["jpeg"]
    _, stored = _stored(path, "train")
    images, labels = _rows(read_records(str(path)))
    assert images.shape == (len(stored), 32, 32, 3)
    tf_decoded = {}
    for r in stored:
        pixels = tf.io.decode_jpeg(r.encoded, channels=3).numpy()
        tf_decoded.setdefault(r.label, []).append(pixels.astype(np.int16))
    # Each image we decoded matches one TensorFlow decoded with its label (within 1 level:
    # both are libjpeg-turbo with the accurate IDCT, possibly of different builds).
    for img, lab in zip(images[:20], labels[:20]):
        diffs = [np.abs(img.astype(np.int16) - t).max() for t in tf_decoded[lab]]
        assert min(diffs) <= 1


def test_splitting_shards_by_index_keeps_every_record(converted):
    path = converted["raw"]
    m = mf.read_manifest(str(path))
    plan = plan_tasks(m, "train", 1, ReadOptions(records_per_task=7, block_rows=4))
    assert len(plan) > len(m.shards("train"))
    assert sum(p.num_records for t in plan for p in t) == m.num_records("train")
    assert any(not p.whole for t in plan for p in t)
    a = _rows(read_records(str(path), records_per_task=7, block_rows=4))
    b = _rows(read_records(str(path)))
    assert sorted(_key(l, i) for i, l in zip(*a)) == sorted(_key(l, i) for i, l in zip(*b))


@pytest.mark.parametrize("batch", [1, 64, 256, 257, 891, 892, 1024, 4096])
@pytest.mark.parametrize("decode", ["workers", "consumer"])
def test_blocks_in_whole_batches_at_any_batch_size(batch, decode):
    """Blocks are whole batches at every batch size: within MAX_BLOCK_BYTES where a batch
    fits in it, one batch a block where it does not (224 px: 891 rows fill 128 MB)."""
    from ray_ingest.read.options import (MAX_BLOCK_BYTES, block_bytes_per_row, block_rows_for,
                                         block_rows_in_batches)

    spec = RecordSpec("jpeg", 224, 224, 3, 10, record_bytes=11_000)
    rows = block_rows_in_batches(spec, decode, batch)
    assert rows % batch == 0 and rows >= batch
    row = block_bytes_per_row(spec, decode)
    assert rows * row <= MAX_BLOCK_BYTES or rows == batch
    assert block_rows_for(spec, rows, decode) == rows  # the read keeps it


def test_blocks_of_encoded_records_are_sized_by_their_bytes(converted):
    from ray_ingest.read.options import (DEFAULT_BLOCK_ROWS, ENCODED_BLOCK_BYTES,
                                         MAX_BLOCK_BYTES, block_rows_for)

    spec = RecordSpec("jpeg", 224, 224, 3, 10, record_bytes=11_000)
    assert block_rows_for(spec, None) == DEFAULT_BLOCK_ROWS  # decoded in the read tasks
    rows = block_rows_for(spec, None, "consumer")
    assert rows % DEFAULT_BLOCK_ROWS == 0
    assert ENCODED_BLOCK_BYTES / 2 < rows * spec.record_bytes <= ENCODED_BLOCK_BYTES
    assert block_rows_for(spec, 300, "consumer") == 300  # asked for: kept
    assert block_rows_for(spec, 10**9, "consumer") == 10**9  # asked for: kept
    raw = RecordSpec("raw", 224, 224, 3, 10, record_bytes=150_600)
    assert block_rows_for(raw, None, "consumer") == DEFAULT_BLOCK_ROWS  # nothing to decode
    # from a real manifest: the mean stored record, and a consumer read of the split in one
    # block (it is smaller than one)
    path = str(converted["jpeg"])
    m = mf.read_manifest(path)
    got = RecordSpec.of(m)
    shards = [s for split in m.splits for s in m.shards(split)]
    assert got.record_bytes == sum(s.num_bytes for s in shards) // sum(
        s.num_records for s in shards)
    ds = read_records(path, "train", decode="consumer")
    assert [b.num_rows for b in ds.iter_batches(batch_size=None, batch_format="pyarrow")] == [
        m.num_records("train")]


def test_limit_repeat_and_count(converted):
    path = str(converted["jpeg"])
    n = mf.read_manifest(path).num_records("train")
    assert _n(read_records(path)) == n
    assert _n(read_records(path, limit=10)) == 10
    assert _n(read_records(path, repeat=3)) == 3 * n
    with pytest.raises(ConfigError, match="repeat"):
        read_records(path, repeat=0)
    with pytest.raises(ConfigError, match="shard must be"):
        ReadOptions(shard=(2, 2))
    with pytest.raises(TypeError, match="either options or keyword"):
        read_records(path, "train", ReadOptions(), repeat=2)


def _order(path, **kw):
    _, labels = _rows(read_records(path, **kw), prefetch_batches=0)
    images, _ = _rows(read_records(path, **kw), prefetch_batches=0)
    return [hashlib.sha1(i.tobytes()).hexdigest() for i in images]


def test_shuffle_is_deterministic_with_a_seed(converted):
    path = str(converted["raw"])
    kw = dict(shuffle_files=True, shuffle_records=True, records_per_task=16, concurrency=1)
    a = _order(path, seed=1, **kw)
    assert a == _order(path, seed=1, **kw)
    assert a != _order(path, seed=2, **kw)
    plain = _order(path, records_per_task=16, concurrency=1)
    assert sorted(a) == sorted(plain) and a != plain


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(path, fn):
    p = path / mf.MANIFEST_NAME
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def test_manifest_mismatches_are_named(converted, tmp_path):
    d = _copy(converted["raw"], tmp_path / "a")
    _edit_manifest(d, lambda m: m.update(height=48, width=48))
    with pytest.raises(Exception) as e:
        _n(read_records(str(d)))
    assert "channels is (32, 32, 3), the manifest says (48, 48, 3)" in str(e.value)
    assert "train-00000-of-" in str(e.value)

    d = _copy(converted["raw"], tmp_path / "b")
    _edit_manifest(d, lambda m: m.update(encoding="jpeg"))
    with pytest.raises(Exception, match="image/format is 'raw', the manifest says 'jpeg'"):
        _n(read_records(str(d)))

    d = _copy(converted["raw"], tmp_path / "c")
    _edit_manifest(d, lambda m: m.update(class_names=m["class_names"][:2]))
    with pytest.raises(ManifestError, match=r"class_counts \[.*\]; expected 2 counts"):
        read_records(str(d))  # the manifest's own per-class counts contradict it
    for split in ("train", "val"):  # a manifest without them: the records are checked
        _edit_manifest(d, lambda m: m["splits"][split].pop("class_counts"))
    with pytest.raises(Exception, match=r"class/label is \d+, the manifest has class ids 0..1"):
        _n(read_records(str(d)))

    d = _copy(converted["raw"], tmp_path / "d")
    _edit_manifest(d, lambda m: m.update(format_version=3))
    with pytest.raises(ManifestError,
                       match="format version 3; this ray-ingest reads versions 1, 2"):
        read_records(str(d))

    d = _copy(converted["raw"], tmp_path / "e")
    with pytest.raises(ManifestError, match="no split 'test'"):
        read_records(str(d), "test")
    (d / mf.MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match="no manifest"):
        read_records(str(d))


def test_manifest_cannot_point_outside_its_folder(converted, tmp_path):
    d = _copy(converted["raw"], tmp_path / "a")
    _edit_manifest(d, lambda m: m["splits"]["train"]["shards"][0].update(file="../../etc/passwd"))
    with pytest.raises(ManifestError, match="bad shard entry"):
        read_records(str(d))


def test_missing_shard_is_named(converted, tmp_path):
    d = _copy(converted["raw"], tmp_path / "a")
    (d / "train-00001-of-{:05d}.tfrecord".format(len(list(d.glob("train-*.tfrecord"))))).unlink()
    with pytest.raises(ManifestError, match=r"missing .*train-00001-of-"):
        read_records(str(d))


def _corrupt(d, how):
    shard = sorted(d.glob("train-*.tfrecord"))[1]
    raw = bytearray(shard.read_bytes())
    views, _ = scan_records(bytes(raw))
    second = len(views[0]) + 16  # byte offset of record 1
    if how == "flip":  # a byte of record 1's pixels (its framing and protobuf stay valid)
        from ray_ingest.format.example import split_encoded

        record = bytes(views[1])
        pixels_at = record.index(bytes(split_encoded(views[1])[1]))
        raw[second + 12 + pixels_at + 5] ^= 0xFF
        shard.write_bytes(bytes(raw))
    else:
        shard.write_bytes(bytes(raw[: second + 30]))
    return shard, second, len(views)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupt_shard_error_names_file_and_offset(converted, tmp_path, how):
    d = _copy(converted["raw"], tmp_path / "a")
    shard, offset, _ = _corrupt(d, how)
    # Ray Data raises RayTaskError(RecordCorruptError): caught by our class, fields intact.
    with pytest.raises(RecordCorruptError) as e:
        _n(read_records(str(d)))
    assert e.value.path == str(shard)
    error = find_error(e.value)  # the error itself, without Ray's traceback and retry advice
    assert type(error) is RecordCorruptError and error.path == str(shard)
    if how == "flip":
        assert (error.offset, error.reason) == (offset, "data CRC mismatch")
        assert str(error) == f"{shard}: corrupt TFRecord at byte offset {offset}: data CRC mismatch"
    else:
        assert error.offset == offset and "truncated record" in str(error)


def _filenames(ds):
    return [f for b in ds.iter_batches(batch_size=None, batch_format="numpy")
            for f in b["filename"].tolist()]


def _shard_records(shard):
    """``image/filename`` of each record of a shard, and where each record starts."""
    from ray_ingest.format.example import decode_image_example

    views, _ = scan_records(shard.read_bytes())
    offsets = np.cumsum([0] + [len(v) + 16 for v in views])
    return [decode_image_example(v).filename for v in views], offsets


@pytest.mark.parametrize("decode", ["workers", "consumer"])
def test_skip_corrupt_skips_exactly_the_damaged_records_and_reports_them(converted, tmp_path,
                                                                         decode):
    from ray_ingest.read import skip_report

    d = _copy(converted["jpeg"], tmp_path / "a")
    shard = sorted(d.glob("train-*.tfrecord"))[1]
    names, offsets = _shard_records(shard)
    assert len(names) >= 4
    everything = _filenames(read_records(str(d), with_filename=True))
    raw = bytearray(shard.read_bytes())
    for k in (1, 2):  # two neighbours: a data byte of one, the length CRC of the other
        raw[offsets[k] + (60 if k == 1 else 9)] ^= 0xFF
    shard.write_bytes(bytes(raw))
    # Small tasks: the damaged shard is cut into pieces; only the damaged records go.
    ds = read_records(str(d), with_filename=True, skip_corrupt=True, records_per_task=3,
                      decode=decode)
    got = _filenames(ds)
    assert sorted(got) == sorted(set(everything) - {names[1], names[2]})
    report = skip_report(ds)
    assert report.records == 2
    ((r,),) = [report.ranges]
    assert (r.path, r.first, r.last, r.offset, r.end) == (str(shard), 1, 2, offsets[1], offsets[3])
    assert r.reason == "data CRC mismatch; length CRC mismatch"
    # Another pass skips the same records again; the report counts them once.
    _filenames(ds)
    assert skip_report(ds).records == 2
    assert report.summary().startswith(f"2 corrupt records skipped: {shard}: records 1..2 ")


def test_skip_corrupt_on_a_truncated_shard_loses_only_the_records_past_the_end(converted,
                                                                                tmp_path):
    from ray_ingest.read import skip_report

    d = _copy(converted["raw"], tmp_path / "a")
    shard, second, in_shard = _corrupt(d, "truncate")  # cut 30 bytes into record 1
    n = mf.read_manifest(str(d)).num_records("train")
    ds = read_records(str(d), skip_corrupt=True)
    assert _n(ds) == n - (in_shard - 1)
    report = skip_report(ds)
    assert report.records == in_shard - 1
    ((r,),) = [report.ranges]
    assert (r.path, r.first, r.last, r.offset) == (str(shard), 1, in_shard - 1, second)
    assert r.reason == f"truncated: the file ends at byte {second + 30}"
    with pytest.raises(ConfigError, match="skip_corrupt=True"):
        skip_report(read_records(str(d)))
    # A dataset derived from the read is a new object: its log is asked for by the handle.
    from ray_ingest.read.skips import skip_log_of

    with pytest.raises(ConfigError, match="derived from it is a new object"):
        skip_report(ds.map_batches(lambda b: b))
    assert skip_report(skip_log_of(ds)).records == in_shard - 1


def test_crc_verification_can_be_turned_off(converted, tmp_path):
    d = _copy(converted["raw"], tmp_path / "a")
    _corrupt(d, "flip")  # the flipped byte is in the pixels
    n = mf.read_manifest(str(d)).num_records("train")
    assert _n(read_records(str(d), verify_crc=False)) == n


def test_consumer_decode_gives_the_same_batches_as_worker_decode(converted):
    from ray_ingest.read import iter_images

    path = str(converted["jpeg"])
    kw = dict(shuffle_files=True, shuffle_records=True, seed=3, concurrency=1)
    worker = list(read_records(path, **kw).iter_batches(batch_size=7, batch_format="numpy",
                                                        prefetch_batches=0))
    first = next(iter(read_records(path, decode="consumer", **kw).iter_batches(
        batch_size=7, batch_format="numpy")))
    # JPEG bytes travel, not pixels, with where each record came from.
    assert set(first) == {"encoded", "label", "shard", "record"}
    # A fresh dataset: a seeded shuffle differs per execution (epoch), like the worker one's.
    # prefetch_batches=0 on both sides: Ray Data's prefetching may reorder batches.
    consumer = list(iter_images(read_records(path, decode="consumer", **kw), batch_size=7,
                                decode_threads=3, prefetch_batches=0))
    assert sum(len(b["label"]) for b in worker) == mf.read_manifest(path).num_records("train")
    assert [len(b["label"]) for b in consumer] == [len(b["label"]) for b in worker]
    for a, b in zip(worker, consumer):  # same order, same pixels (both libjpeg-turbo, fast DCT)
        assert set(b) == {"image", "label"} and b["image"].dtype == np.uint8
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(a["image"], b["image"])
    # Batches that hold pixels already (raw records, or decoded by workers) pass through.
    raw = str(converted["raw"])
    images, labels = _rows(read_records(raw, concurrency=1), prefetch_batches=0)
    got = list(iter_images(read_records(raw, decode="consumer", concurrency=1), batch_size=5,
                           prefetch_batches=0))
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in got]), images)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in got]), labels)
    with pytest.raises(ConfigError, match="decode must be one of"):
        read_records(path, decode="gpu")


def test_consumer_decode_names_the_shard_and_record(converted, tmp_path):
    from ray_ingest.read import iter_images

    good = list(read_records(str(converted["jpeg"]), decode="consumer").iter_batches(
        batch_size=3, batch_format="numpy"))[:2]
    good[1]["encoded"][1] = b"not a jpeg"
    shard, record = good[1]["shard"][1], int(good[1]["record"][1])

    class Batches:  # a stand-in for a Dataset whose 2nd record of the 2nd batch is not a JPEG
        def iter_batches(self, **kw):
            return iter(good)

    with pytest.raises(ExampleDecodeError, match=rf"{shard}: record {record}: undecodable JPEG"):
        list(iter_images(Batches(), batch_size=3))


def _replace_record(d, index, encoded):
    """Rewrites the first train shard of ``d`` with record ``index`` holding ``encoded`` as its
    image (framing, CRCs, index and manifest all valid: only the image is bad)."""
    m = mf.read_manifest(str(d))
    info = m.shards("train")[0]
    views, _ = scan_records((d / info.file).read_bytes())
    records = [bytes(v) for v in views]
    records[index] = encode_image_example(encoded=encoded, image_format="jpeg", height=32,
                                          width=32, channels=3, label=0, class_text="x",
                                          filename="x.jpg")
    framed = [frame_record(r) for r in records]
    (d / info.file).write_bytes(b"".join(framed))
    offsets = np.cumsum([0] + [len(f) for f in framed])
    (d / info.index).write_text("".join(f"{o} {len(f)}\n" for o, f in zip(offsets, framed)))

    def fix(data):
        data["splits"]["train"]["shards"][0]["num_bytes"] = int(offsets[-1])
        data["splits"]["train"]["num_bytes"] = sum(
            s["num_bytes"] for s in data["splits"]["train"]["shards"])
    _edit_manifest(d, fix)
    return d / info.file


def test_worker_decode_names_the_shard_and_record(converted, tmp_path):
    d = _copy(converted["jpeg"], tmp_path / "a")
    shard = _replace_record(d, 2, b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ExampleDecodeError, match=rf"{shard}: record 2: undecodable JPEG"):
        _n(read_records(str(d)))


@pytest.mark.tf
def test_iter_tf_batches(converted):
    pytest.importorskip("tensorflow")
    ds = read_records(str(converted["jpeg"]), "val")
    batches = list(ds.iter_tf_batches(batch_size=8))
    assert batches[0]["image"].dtype.name == "uint8"
    assert tuple(batches[0]["image"].shape[1:]) == (32, 32, 3)
    assert sum(int(b["label"].shape[0]) for b in batches) == mf.read_manifest(
        str(converted["jpeg"])).num_records("val")


def test_a_wrong_split_total_is_refused(converted, tmp_path):
    d = _copy(converted["raw"], tmp_path / "a")
    n = mf.read_manifest(str(d)).num_records("train")
    _edit_manifest(d, lambda m: m["splits"]["train"].update(num_records=n + 1))
    with pytest.raises(ManifestError, match=rf"split 'train' says num_records {n + 1}, its "
                                            rf"shards add up to {n}"):
        read_records(str(d))


# ---- per-shard SHA-256 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checksummed(converted, tmp_path_factory):
    """The raw conversion of the session, made again with checksums."""
    from ray_ingest.convert import convert

    src = mf.read_manifest(str(converted["raw"])).data["source"]
    out = tmp_path_factory.mktemp("checksummed")
    convert(src, str(out), size=32, encoding="raw", val_fraction=0.2, shard_size_mb=0.04,
            checksums=True, overwrite=True)
    return out


def test_checksums_are_the_sha256_of_each_shard(checksummed):
    from ray_ingest.format.verify import verify_shard

    m = mf.read_manifest(str(checksummed))
    for split in m.splits:
        for s in m.shards(split):
            assert s.sha256 == hashlib.sha256((checksummed / s.file).read_bytes()).hexdigest()
            assert verify_shard(m, split, s).sha256_checked
    tasks = plan_tasks(m, "train", 64, ReadOptions(verify_checksums=True, records_per_task=3))
    assert len(tasks) > 1 and all(p.whole for t in tasks for p in t)
    assert _n(read_records(str(checksummed), verify_checksums=True)) == m.num_records("train")


def _reframe_first_record(shard):
    """Changes a pixel of the shard's first record and frames it anew: every CRC holds."""
    from ray_ingest.format.example import split_encoded

    raw = shard.read_bytes()
    views, _ = scan_records(raw)
    record = bytearray(views[0])
    record[record.index(bytes(split_encoded(views[0])[1])) + 7] ^= 0x01
    shard.write_bytes(frame_record(bytes(record)) + raw[len(views[0]) + 16:])


def test_checksum_mismatch_is_named(checksummed, converted, tmp_path):
    from ray_ingest.errors import RecordCorruptError
    from ray_ingest.format.verify import verify_shard

    d = _copy(checksummed, tmp_path / "a")
    shard, offset, _ = _corrupt(d, "flip")
    m = mf.read_manifest(str(d))
    info = next(s for s in m.shards("train") if s.file == shard.name)
    with pytest.raises(RecordCorruptError, match=f"at byte offset {offset}: data CRC mismatch"):
        verify_shard(m, "train", info)
    with pytest.raises(Exception, match=f"{shard}: corrupt TFRecord at byte offset {offset}"):
        _n(read_records(str(d), verify_checksums=True, verify_crc=False))

    d = _copy(checksummed, tmp_path / "b")
    shard = sorted(d.glob("val-*.tfrecord"))[0]
    _reframe_first_record(shard)
    m = mf.read_manifest(str(d))
    info = m.shards("val")[0]
    assert _n(read_records(str(d), "val")) == m.num_records("val")
    with pytest.raises(ManifestError, match=rf"{shard}: SHA-256 is [0-9a-f]{{64}}, the manifest "
                                            r"says [0-9a-f]{64}, though every record's CRC holds"):
        verify_shard(m, "val", info)
    with pytest.raises(ManifestError, match="every record's CRC holds"):
        _n(read_records(str(d), "val", verify_checksums=True, skip_corrupt=True))

    d = _copy(checksummed, tmp_path / "c")
    (d / info.index).write_text("0 1\n")
    with pytest.raises(ManifestError, match=r"\.idx: line 1 says record 0 is at byte offset 0 "
                                            r"and 1 bytes long"):
        verify_shard(mf.read_manifest(str(d)), "val", info)

    with pytest.raises(ManifestError, match="the shards of split 'train' have no SHA-256 "
                                            r"\(convert with --checksums\)"):
        read_records(str(converted["raw"]), verify_checksums=True)


def test_a_shard_index_is_parsed_once_per_process_and_a_rewritten_shard_again(tmp_path):
    from ray_ingest.read import task
    from ray_ingest.read.plan import ShardRange

    (tmp_path / "a.idx").write_text("0 10\n10 12\n")
    first = ShardRange("a.tfrecord", "a.idx", 0, 1, 2, 22)
    assert task.cached_shard_index(str(tmp_path), first).tolist() == [[0, 10], [10, 12]]
    (tmp_path / "a.idx").write_text("0 11\n11 12\n")
    # The same shard as the manifest lists it: the parsed copy.
    assert task.cached_shard_index(str(tmp_path), first).tolist() == [[0, 10], [10, 12]]
    rewritten = ShardRange("a.tfrecord", "a.idx", 0, 1, 2, 23)
    assert task.cached_shard_index(str(tmp_path), rewritten).tolist() == [[0, 11], [11, 12]]
    (tmp_path / "b.idx").write_text("0 10\n")
    with pytest.raises(Exception, match="index lines"):
        task.cached_shard_index(str(tmp_path), ShardRange("b.tfrecord", "b.idx", 0, 1, 2, 10))

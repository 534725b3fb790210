"""The record and shard checks: each rule of a record names the file, the record and the rule;
an index line that is wrong, missing or extra is named; one SHA-256 message; errors survive
pickling (they cross Ray's process boundaries)."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from helpers import jpeg_bytes, random_rgb
from ray_ingest.errors import (
    ExampleDecodeError,
    ManifestError,
    RecordCorruptError,
    RecordMismatchError,
)
from ray_ingest.format.check import (
    RecordSpec,
    check_digest,
    check_extent,
    check_index,
    check_record,
    record_extents,
    scan_shard,
)
from ray_ingest.format.example import encode_example, encode_image_example
from ray_ingest.format.framing import frame_record, index_lines
from ray_ingest.format.manifest import Manifest, ShardInfo

PATH = "/data/train-00003-of-00008.tfrecord"
NAMES = ("cat", "dog", "eel")
RAW = RecordSpec("raw", 4, 4, 3, 3, class_names=NAMES)
JPEG = RecordSpec("jpeg", 16, 24, 3, 3, class_names=NAMES)
WHOLE = RecordSpec("jpeg", None, None, 3, 3, max_side=32, short_side=20, class_names=NAMES)


def _record(encoded=bytes(48), image_format="raw", height=4, width=4, channels=3, label=1,
            class_text="dog"):
    return encode_image_example(encoded=encoded, image_format=image_format, height=height,
                                width=width, channels=channels, label=label,
                                class_text=class_text, filename="a/b.png")


def _jpeg(height=16, width=24, **kw):
    return _record(jpeg_bytes(random_rgb(height, width)), "jpeg", height, width, **kw)


def _raises(error, record, spec, match, *, offset=None, thorough=False):
    with pytest.raises(error) as e:
        check_record(memoryview(record), spec, PATH, 7, offset, thorough=thorough)
    where = f"{PATH}: record 7" + ("" if offset is None else f" at byte offset {offset}")
    assert str(e.value).startswith(where + ": ")
    assert match in str(e.value)
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is error and str(again) == str(e.value)
    return e.value


def test_a_good_record_gives_its_fields_and_a_view_of_its_pixels():
    record = _record(bytes(range(48)), label=2, class_text="eel")
    got = check_record(memoryview(record), RAW, PATH, 0, thorough=True)
    assert (got.label, got.height, got.width) == (2, 4, 4)
    assert isinstance(got.payload, memoryview) and bytes(got.payload) == bytes(range(48))
    jpeg = check_record(_jpeg(), JPEG, PATH, 0, 10, thorough=True)
    assert (jpeg.height, jpeg.width) == (16, 24)
    whole = check_record(_jpeg(20, 32), WHOLE, PATH, 0, thorough=True)
    assert (whole.height, whole.width) == (20, 32)


def test_a_record_that_is_no_image_record_is_named():
    _raises(ExampleDecodeError, b"\x0a\xff\xff", RAW, "not one of our image records")
    no_label = encode_example({"image/encoded": bytes(48), "image/format": "raw",
                               "image/height": 4, "image/width": 4})
    _raises(ExampleDecodeError, no_label, RAW, "not one of our image records", offset=96)


def test_the_encoding_rule():
    _raises(RecordMismatchError, _jpeg(4, 4), RAW,
            "image/format is 'jpeg', the manifest says 'raw'", offset=0)


def test_the_size_rule_of_fixed_size_records():
    _raises(RecordMismatchError, _record(bytes(60), height=4, width=5), RAW,
            "height x width x channels is (4, 5, 3), the manifest says (4, 4, 3)")
    gray = _record(bytes(16), channels=1)
    # channels: only a thorough check reads them (raw pixels of the wrong size are caught
    # by every check)
    _raises(RecordMismatchError, gray, RAW, "16 raw pixel bytes, height x width x channels "
                                            "needs 48")
    _raises(RecordMismatchError, _jpeg(channels=1), JPEG,
            "height x width x channels is (16, 24, 1), the manifest says (16, 24, 3)",
            thorough=True)
    assert check_record(_jpeg(channels=1), JPEG, PATH, 7).label == 1


def test_the_class_id_rule():
    for label in (-1, 3):
        _raises(RecordMismatchError, _record(label=label), RAW,
                f"image/class/label is {label}, the manifest has class ids 0..2")


def test_the_class_text_rule_is_thorough():
    record = _record(label=0, class_text="dog")
    assert check_record(record, RAW, PATH, 7).label == 0
    _raises(RecordMismatchError, record, RAW,
            "image/class/text of class 0 is 'dog', the manifest says 'cat'", thorough=True)


def test_whole_images_within_the_manifests_limits():
    _raises(RecordMismatchError, _jpeg(16, 40), WHOLE, "16x40 exceeds the manifest's max_side 32")
    _raises(RecordMismatchError, _jpeg(24, 24), WHOLE,
            "24x24 exceeds the manifest's short_side 20")
    _raises(RecordMismatchError, _record(b"x", "jpeg", 0, 8), WHOLE,
            "height x width x channels is (0, 8, 3); whole images need positive sizes and 1 "
            "or 3 channels")
    _raises(RecordMismatchError, _jpeg(channels=2), WHOLE,
            "height x width x channels is (16, 24, 2)", thorough=True)
    unlimited = RecordSpec("jpeg", None, None, 3, 3)
    assert check_record(_jpeg(16, 400), unlimited, PATH, 7).width == 400


def test_the_jpeg_rules_are_thorough():
    lying = _record(jpeg_bytes(random_rgb(16, 20)), "jpeg", 16, 24)
    assert check_record(lying, JPEG, PATH, 7).width == 24  # the reader decodes, and sees
    _raises(RecordMismatchError, lying, JPEG, "the JPEG is 16x20, the record says 16x24",
            offset=64, thorough=True)
    _raises(ExampleDecodeError, _record(b"\xff\xd8 not a jpeg", "jpeg", 16, 24), JPEG,
            "unreadable JPEG header", thorough=True)
    import simplejpeg

    gray = simplejpeg.encode_jpeg(np.ascontiguousarray(random_rgb(16, 24)[..., :1]),
                                  colorspace="Gray")
    _raises(RecordMismatchError, _record(gray, "jpeg", 16, 24, channels=3), WHOLE,
            "image/channels is 3, its JPEG is Gray", thorough=True)


def test_the_spec_comes_from_the_manifest():
    shards = [{"file": "train-0.tfrecord", "index": "train-0.idx", "num_records": 4,
               "num_bytes": 400}]
    data = {"encoding": "jpeg", "height": None, "width": None, "channels": 3,
            "class_names": list(NAMES), "max_side": 32, "short_side": None, "resize_mode": "keep",
            "splits": {"train": {"shards": shards}, "val": {"shards": []}}}
    spec = RecordSpec.of(Manifest("/data", data))
    assert spec == RecordSpec("jpeg", None, None, 3, 3, record_bytes=100, max_side=32,
                              class_names=NAMES)
    assert spec.variable and spec.format_bytes == b"jpeg" and spec.raw_record_bytes == 0
    raw = RecordSpec("raw", 4, 4, 3, 3)
    assert raw.raw_record_bytes == 48 and pickle.loads(pickle.dumps(raw)).raw_record_bytes == 48


# ---------------------------------------------------------------------------------------------
# Shards.


def _shard(tmp_path, n=4):
    records = [_record(bytes(48), label=k % 3) for k in range(n)]
    data = b"".join(frame_record(r) for r in records)
    path = tmp_path / "s.tfrecord"
    path.write_bytes(data)
    info = ShardInfo("s.tfrecord", "s.idx", n, len(data), hashlib.sha256(data).hexdigest())
    return str(path), data, info


def test_check_index_names_a_wrong_missing_or_extra_line(tmp_path):
    path, data, info = _shard(tmp_path)
    views, extents = scan_shard(path, data, info)
    assert len(views) == 4 and extents == record_extents(views)
    idx = tmp_path / "s.idx"
    idx.write_text(index_lines(extents))
    check_index(str(idx), path, extents)
    (offset, size), rest = extents[2], extents[3:]
    idx.write_text(index_lines(extents[:2] + [(offset + 1, size)] + rest))
    with pytest.raises(ManifestError, match=rf"s.idx: line 3 says record 2 is at byte offset "
                                            rf"{offset + 1} and {size} bytes long; {path} has it "
                                            rf"at {offset}, {size} bytes"):
        check_index(str(idx), path, extents)
    idx.write_text(index_lines(extents[:3]))
    with pytest.raises(ManifestError, match=rf"s.idx: 3 index lines for the 4 records of {path}"):
        check_index(str(idx), path, extents)
    idx.write_text(index_lines(extents[:1] + extents[2:]))  # one from the middle
    with pytest.raises(ManifestError, match="s.idx: line 2 says record 1 is at byte offset"):
        check_index(str(idx), path, extents)
    idx.write_text(index_lines(extents + [(len(data), 64)]))
    with pytest.raises(ManifestError, match=rf"s.idx: 5 index lines for the 4 records"):
        check_index(str(idx), path, extents)
    idx.unlink()
    with pytest.raises(ManifestError, match="s.idx: listed in the manifest but missing"):
        check_index(str(idx), path, extents)


def test_check_extent_names_a_short_or_long_shard(tmp_path):
    path, data, info = _shard(tmp_path)
    last = record_extents(scan_shard(path, data, info)[0])[-1][0]
    with pytest.raises(RecordCorruptError, match=r"ends after 3 records .*\(truncated\)") as e:
        scan_shard(path, data[:last], info)
    assert e.value.offset == last
    with pytest.raises(RecordCorruptError, match="goes on past the manifest's 4 records") as e:
        check_extent(path, len(data) + 64, 5, info)
    assert e.value.offset == len(data)
    assert pickle.loads(pickle.dumps(e.value)).offset == len(data)
    # Fewer but larger records: not a truncated file, another one.
    with pytest.raises(RecordCorruptError, match=r"3 records, \d+ bytes; the manifest says 4 "
                                                 r"records, \d+ bytes \(a shard that differs"):
        check_extent(path, len(data) + 64, 3, info)


def test_check_digest_has_one_message(tmp_path):
    path, data, info = _shard(tmp_path)
    assert check_digest(path, data, info.sha256) is True
    assert check_digest(path, data, None) is False
    last = record_extents(scan_shard(path, data, info)[0])[-1][0]
    other = data[:last] + frame_record(_record(label=2))  # well framed, not what was written
    with pytest.raises(ManifestError) as e:
        check_digest(path, other, info.sha256)
    got = hashlib.sha256(other).hexdigest()
    assert str(e.value) == (f"{path}: SHA-256 is {got}, the manifest says {info.sha256}, "
                            "though every record's CRC holds (a replaced or rewritten shard)")
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)
    damaged = bytearray(data)
    damaged[40] ^= 0xFF
    with pytest.raises(RecordCorruptError, match="data CRC mismatch"):
        check_digest(path, bytes(damaged), info.sha256)  # the damage is named where it is


def test_the_payload_is_a_view_into_the_shard(tmp_path):
    path, data, info = _shard(tmp_path)
    views, extents = scan_shard(path, data, info)
    got = [check_record(v, RAW, path, i, extents[i][0]) for i, v in enumerate(views)]
    assert [g.label for g in got] == [0, 1, 2, 0]
    assert np.frombuffer(got[1].payload, np.uint8).sum() == 0

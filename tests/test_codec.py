"""Record codec: our writer read by TensorFlow, TensorFlow's writer read by us, and corruption."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from helpers import tf_feature_spec
from ray_ingest.errors import ExampleDecodeError, ManifestError, RecordCorruptError
from ray_ingest.format import keys
from ray_ingest.format.example import (
    decode_example,
    decode_image_example,
    encode_example,
    encode_image_example,
)
from ray_ingest.format.framing import (
    TFRecordWriter,
    frame_record,
    masked_crc32c,
    read_index,
    scan_records,
    scan_resync,
)
from ray_ingest.format.records import iter_shard


def _records(n=20, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
        out.append(
            (img, encode_image_example(encoded=img.tobytes(), image_format="raw", height=8, width=6,
                                       channels=3, label=i % 5, class_text=f"c{i % 5}",
                                       filename=f"c{i % 5}/{i}.jpg"))
        )
    return out


def test_masked_crc_known_value():
    # TensorFlow's crc32c tests: masked CRC of b"a" (crc 0xC1D04330).
    crc = 0xC1D04330
    assert masked_crc32c(b"a") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_example_round_trip_all_types():
    data = encode_example({"b": b"\x00\xff", "s": "héllo", "i": [1, -2, 2**62], "f": [0.5, -1.25],
                           "one": 7, "np": np.array([3, 4], dtype=np.int32)})
    d = decode_example(data)
    assert d["b"] == [b"\x00\xff"]
    assert d["s"] == ["héllo".encode()]
    assert d["i"] == [1, -2, 2**62]
    assert d["f"] == [0.5, -1.25]
    assert d["one"] == [7] and d["np"] == [3, 4]


def test_example_encode_rejects_ambiguous_values():
    with pytest.raises(TypeError):
        encode_example({"x": True})
    with pytest.raises(ValueError):
        encode_example({"x": []})
    with pytest.raises(TypeError):
        encode_example({"x": [1, b"a"]})


def test_decode_rejects_garbage_and_missing_keys():
    with pytest.raises(ExampleDecodeError):
        decode_example(b"\x0a\xff\xff\xff")
    with pytest.raises(ExampleDecodeError, match="missing feature .image/height"):
        decode_image_example(encode_example({keys.ENCODED: b"x", keys.FORMAT: "raw"}))


def test_framing_and_index_round_trip(tmp_path):
    recs = _records()
    path = tmp_path / "a.tfrecord"
    with open(path, "wb") as f:
        w = TFRecordWriter(f)
        for _, r in recs:
            w.write(r)
    raw = path.read_bytes()
    assert raw == b"".join(frame_record(r) for _, r in recs)
    index = read_index(w.index_text())
    # DALI's tfrecord2idx: "offset size" with size covering the framed record.
    offset = 0
    for (o, size), (_, r) in zip(index, recs):
        assert o == offset and size == len(r) + 16
        offset += size
    assert offset == len(raw)
    views, err = scan_records(raw, path=str(path))
    assert err is None and [bytes(v) for v in views] == [r for _, r in recs]
    for (img, _), v in zip(recs, views):
        rec = decode_image_example(v)
        assert np.array_equal(np.frombuffer(rec.encoded, np.uint8).reshape(8, 6, 3), img)


@pytest.mark.tf
def test_tensorflow_reads_our_records(tmp_path):
    tf = pytest.importorskip("tensorflow")
    recs = _records()
    path = tmp_path / "ours.tfrecord"
    with open(path, "wb") as f:
        w = TFRecordWriter(f)
        for _, r in recs:
            w.write(r)
    spec = tf_feature_spec()
    got = list(tf.data.TFRecordDataset(str(path)).map(lambda s: tf.io.parse_single_example(s, spec)))
    assert len(got) == len(recs)
    for i, (ex, (img, _)) in enumerate(zip(got, recs)):
        pixels = tf.reshape(tf.io.decode_raw(ex[keys.ENCODED], tf.uint8), [8, 6, 3]).numpy()
        assert np.array_equal(pixels, img)
        assert ex[keys.LABEL].numpy() == i % 5
        assert ex[keys.FORMAT].numpy() == b"raw"
        assert ex[keys.FILENAME].numpy().decode() == f"c{i % 5}/{i}.jpg"


@pytest.mark.tf
def test_we_read_tensorflow_written_records(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = str(tmp_path / "tf.tfrecord")
    expected = []
    with tf.io.TFRecordWriter(path) as w:
        for i in range(15):
            ex = tf.train.Example(features=tf.train.Features(feature={
                keys.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes([i]) * (i * 37)])),
                keys.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[i - 3])),
                "f": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 4])),
            }))
            w.write(ex.SerializeToString())
            expected.append(i)
    got = [decode_example(r) for r in iter_shard(path)]
    assert [g[keys.LABEL][0] for g in got] == [i - 3 for i in expected]
    assert [g[keys.ENCODED][0] for g in got] == [bytes([i]) * (i * 37) for i in expected]
    assert [g["f"][0] for g in got] == [i / 4 for i in expected]


def test_corruption_names_file_and_offset():
    recs = [r for _, r in _records(5)]
    raw = bytearray(b"".join(frame_record(r) for r in recs))
    second = len(frame_record(recs[0]))
    flipped = bytearray(raw)
    flipped[second + 20] ^= 0x01  # inside record 2's data
    with pytest.raises(RecordCorruptError) as e:
        scan_records(bytes(flipped), path="s.tfrecord")
    assert e.value.offset == second and "data CRC" in str(e.value) and "s.tfrecord" in str(e.value)
    views, err = scan_records(bytes(flipped), path="s.tfrecord", skip_corrupt=True)
    assert len(views) == 1 and err.offset == second
    # Without verification the flipped byte passes (the caller asked for it).
    views, err = scan_records(bytes(flipped), verify=False)
    assert err is None and len(views) == 5
    truncated = bytes(raw[:-7])
    with pytest.raises(RecordCorruptError, match="truncated record"):
        scan_records(truncated, path="t.tfrecord")
    with pytest.raises(RecordCorruptError, match="truncated header"):
        scan_records(bytes(raw) + b"\x01\x02", path="t.tfrecord")
    bad_len = bytearray(raw)
    bad_len[0:8] = struct.pack("<Q", 10**12)
    with pytest.raises(RecordCorruptError, match="length CRC"):
        scan_records(bytes(bad_len))


def _framed_with_index(n=8):
    recs = [r for _, r in _records(n)]
    framed = [frame_record(r) for r in recs]
    offsets = np.cumsum([0] + [len(f) for f in framed])
    entries = [(int(o), len(f)) for o, f in zip(offsets, framed)]
    return recs, bytearray(b"".join(framed)), entries


def _resynced(buf, entries, first=0, base=0, verify=True):
    runs, skipped = scan_resync(bytes(buf), entries, first, path="s.tfrecord", base_offset=base,
                                verify=verify)
    got = {start + i: bytes(v) for start, views in runs for i, v in enumerate(views)}
    return got, [(s.first, s.last, s.offset, s.end, s.reason) for s in skipped]


def test_resync_skips_each_damaged_record_alone():
    recs, raw, entries = _framed_with_index(8)
    raw[entries[2][0] + 20] ^= 0x01  # record 2's data
    raw[entries[3][0] + 9] ^= 0x01  # record 3's length CRC
    raw[entries[6][0] + 3] ^= 0x40  # record 6's length field
    got, skipped = _resynced(raw, entries)
    assert sorted(got) == [0, 1, 4, 5, 7] and all(got[i] == recs[i] for i in got)
    assert skipped == [(2, 2, entries[2][0], entries[3][0], "data CRC mismatch"),
                       (3, 3, entries[3][0], entries[4][0], "length CRC mismatch"),
                       (6, 6, entries[6][0], entries[7][0], "length CRC mismatch")]
    # Undamaged: one run of every record, nothing skipped.
    got, skipped = _resynced(_framed_with_index(8)[1], entries)
    assert sorted(got) == list(range(8)) and skipped == []


def test_resync_loses_only_the_records_past_the_end_of_a_truncated_buffer():
    recs, raw, entries = _framed_with_index(8)
    cut = entries[5][0] + 7  # inside record 5's header
    got, skipped = _resynced(raw[:cut], entries)
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert skipped == [(5, 7, entries[5][0], entries[7][0] + entries[7][1],
                        f"truncated: the file ends at byte {cut}")]
    # Cut at a record boundary, and a damaged record before the cut.
    raw[entries[1][0] + 30] ^= 0x01
    got, skipped = _resynced(raw[:entries[6][0]], entries)
    assert sorted(got) == [0, 2, 3, 4, 5]
    assert [s[:2] for s in skipped] == [(1, 1), (6, 7)]
    # Bytes past the last record the index lists are no records of ours: ignored.
    got, skipped = _resynced(_framed_with_index(8)[1] + b"junk", entries)
    assert sorted(got) == list(range(8)) and skipped == []


def test_resync_of_a_piece_numbers_records_and_bytes_in_the_file():
    recs, raw, entries = _framed_with_index(8)
    raw[entries[4][0] + 25] ^= 0x01
    begin, end = entries[3][0], entries[6][0] + entries[6][1]  # records 3..6 of the file
    got, skipped = _resynced(raw[begin:end], entries[3:7], first=3, base=begin)
    assert sorted(got) == [3, 5, 6] and all(got[i] == recs[i] for i in got)
    assert skipped == [(4, 4, entries[4][0], entries[5][0], "data CRC mismatch")]


@pytest.mark.tf
def test_tensorflow_also_rejects_our_corrupt_file(tmp_path):
    tf = pytest.importorskip("tensorflow")
    raw = bytearray(b"".join(frame_record(r) for _, r in _records(3)))
    raw[30] ^= 0xFF
    p = tmp_path / "bad.tfrecord"
    p.write_bytes(bytes(raw))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(p)))


def test_index_parse_errors():
    assert read_index("0 10\n10 20\n") == [(0, 10), (10, 20)]
    with pytest.raises(ManifestError, match="x.idx:2"):
        read_index("0 10\nbad\n", "x.idx")

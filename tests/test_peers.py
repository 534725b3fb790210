"""The peer loaders against our files: NVIDIA DALI reads our shards with our ``.idx`` and gets
what our reader gets; our reader reads shards that TensorFlow wrote and DALI indexed (adopted
with a manifest); the peer rows of the throughput job run, or are skipped with one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import jpeg_bytes, random_rgb

from ray_ingest.format import keys
from ray_ingest.format.manifest import read_manifest
from ray_ingest.format.records import iter_records

pytestmark = pytest.mark.usefixtures("ray_session")


def _dali():
    return pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed "
                               "(pip install 'ray-ingest[bench-peers]')")


def _our_pixels(root, split: str, dct: str):
    """filename -> (label, pixels) as our reader streams them."""
    from ray_ingest.read import read_records

    out = {}
    for b in read_records(str(root), split, with_filename=True, jpeg_dct=dct).iter_batches(
            batch_size=64, batch_format="numpy"):
        for name, label, img in zip(b["filename"], b["label"], b["image"]):
            out[str(name)] = (int(label), img)
    return out


def test_dali_reads_our_shards_with_our_index_and_gets_every_record(converted):
    _dali()
    import nvidia.dali.tfrecord as tfrec
    from nvidia.dali import fn, pipeline_def, types

    root = str(converted["jpeg"])
    m = read_manifest(root)
    shards = m.shards("train")
    assert len(shards) > 1  # the index tells DALI where each shard's records are
    n = m.num_records("train")

    @pipeline_def(batch_size=n, num_threads=2, device_id=None)
    def records():
        rec = fn.readers.tfrecord(
            path=[os.path.join(root, s.file) for s in shards],
            index_path=[os.path.join(root, s.index) for s in shards], random_shuffle=False,
            features={keys.ENCODED: tfrec.FixedLenFeature((), tfrec.string, ""),
                      keys.LABEL: tfrec.FixedLenFeature([1], tfrec.int64, -1),
                      keys.FILENAME: tfrec.FixedLenFeature((), tfrec.string, "")})
        images = fn.decoders.image(rec[keys.ENCODED], device="cpu", output_type=types.RGB)
        return rec[keys.ENCODED], images, rec[keys.LABEL], rec[keys.FILENAME]

    pipe = records()
    pipe.build()
    encoded, images, labels, names = pipe.run()  # one batch: the whole split, once
    stored = list(iter_records(root, "train"))
    assert len(labels) == n == len(stored)
    # the same records in shard order: bytes and labels exactly
    for i, r in enumerate(stored):
        assert encoded.at(i).tobytes() == r.encoded
        assert int(labels.at(i)[0]) == r.label
        assert names.at(i).tobytes().decode() == r.filename
    # the same pixels as our reader decodes (libjpeg-turbo both; DALI's default IDCT is the
    # accurate one)
    ours = _our_pixels(root, "train", "accurate")
    assert len(ours) == n
    worst = 0
    for i, r in enumerate(stored):
        label, pixels = ours[r.filename]
        assert label == int(labels.at(i)[0])
        got = np.asarray(images.at(i))
        assert got.shape == pixels.shape
        worst = max(worst, int(np.abs(got.astype(int) - pixels).max()))
    assert worst <= PIXEL_TOLERANCE, f"DALI's pixels differ from ours by up to {worst}"


#: Largest difference of one pixel value between DALI's CPU decoder and ours, measured.
PIXEL_TOLERANCE = 0


def _tf_written(tmp_path, sizes):
    """TFRecord files written by TensorFlow's own writer with TensorFlow's Example builder:
    the standard image keys, no class text, no filename; returns (paths, [(label, pixels)])."""
    tf = pytest.importorskip("tensorflow")

    def feature(v):
        if isinstance(v, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    paths, want, k = [], [], 0
    for f, count in enumerate(sizes):
        path = str(tmp_path / f"foreign.tfrecord-{f}")
        with tf.io.TFRecordWriter(path) as w:
            for _ in range(count):
                img = random_rgb(24, 40, seed=k)
                data = jpeg_bytes(img)
                label = k % 3
                ex = tf.train.Example(features=tf.train.Features(feature={
                    keys.ENCODED: feature(data), keys.FORMAT: feature(b"jpeg"),
                    keys.HEIGHT: feature(24), keys.WIDTH: feature(40),
                    keys.LABEL: feature(label)}))
                w.write(ex.SerializeToString())
                decoded = tf.io.decode_jpeg(data, channels=3).numpy()
                want.append((label, decoded))
                k += 1
        paths.append(path)
    return paths, want


def _tfrecord2idx():
    exe = shutil.which("tfrecord2idx") or os.path.join(os.path.dirname(sys.executable),
                                                       "tfrecord2idx")
    if not os.path.exists(exe):
        pytest.skip("DALI's tfrecord2idx is not installed (pip install "
                    "'ray-ingest[bench-peers]')")
    return exe


def _read_all(root):
    from ray_ingest.read import read_records

    got = []
    for b in read_records(str(root), "train").iter_batches(batch_size=7, batch_format="numpy"):
        got.extend(zip(b["label"].tolist(), b["image"]))
    return got


def _same_records(got, want):
    key = lambda p: (p[0], p[1].tobytes())  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))


def test_we_read_shards_tensorflow_wrote_and_dali_indexed(tmp_path):
    from ray_ingest.format.adopt import adopt_tfrecords

    exe = _tfrecord2idx()
    paths, want = _tf_written(tmp_path, [5, 8])
    for p in paths:  # DALI's index of each file, named as its users name it
        subprocess.run([exe, p, p + ".idx"], check=True, capture_output=True)
    out = tmp_path / "adopted"
    m = adopt_tfrecords(str(out), {"train": paths})
    assert m.num_records("train") == 13 and m.class_names == ["0", "1", "2"]
    assert (m.height, m.width, m.encoding) == (24, 40, "jpeg")
    for shard, p in zip(m.shards("train"), paths):  # DALI's index and ours: the same lines
        assert (out / shard.index).read_text() == open(p + ".idx").read()
    _same_records(_read_all(out), want)


def test_adopted_tensorflow_shards_are_checked(tmp_path):
    from ray_ingest.errors import ConfigError, ManifestError, RecordCorruptError
    from ray_ingest.format.adopt import adopt_tfrecords
    from ray_ingest.format.verify import verify_shard

    paths, want = _tf_written(tmp_path, [4, 3])
    m = adopt_tfrecords(str(tmp_path / "ok"), {"train": paths[:1], "val": paths[1:]},
                        class_names=["a", "b", "c"])
    assert m.class_names == ["a", "b", "c"] and m.class_counts("val") == [1, 1, 1]
    for split in ("train", "val"):
        for s in m.shards(split):
            verify_shard(m, split, s)  # our index, sizes, CRCs and records
    _same_records(_read_all(tmp_path / "ok"), want[:4])
    with pytest.raises(ConfigError, match="already holds a dataset"):
        adopt_tfrecords(str(tmp_path / "ok"), {"train": paths})
    # an index that does not list the file's records
    with open(paths[0] + ".idx", "w") as f:
        f.write("0 10\n")
    with pytest.raises(ManifestError, match=r"foreign.tfrecord-0.idx: line 1 says record 0 is at "
                                            r"byte offset 0 and 10 bytes long; .*foreign"):
        adopt_tfrecords(str(tmp_path / "bad-index"), {"train": paths[:1]})
    os.remove(paths[0] + ".idx")
    # a flipped byte: the CRC names the file
    data = bytearray(open(paths[1], "rb").read())
    data[40] ^= 0xFF
    open(paths[1], "wb").write(bytes(data))
    with pytest.raises(RecordCorruptError, match="foreign.tfrecord-1"):
        adopt_tfrecords(str(tmp_path / "bad-crc"), {"train": paths})
    assert not (tmp_path / "bad-crc" / "manifest.json").exists()


def test_the_adopt_command(tmp_path, capsys):
    from ray_ingest.cli import main

    paths, want = _tf_written(tmp_path, [3, 2])
    assert main(["adopt", str(tmp_path / "a"), "--train", paths[0], "--val", paths[1],
                 "--class-names", "x,y,z"]) == 0
    assert "adopt: train 3, val 2 records of jpeg 24x40, 3 classes" in capsys.readouterr().out
    assert read_manifest(str(tmp_path / "a")).class_names == ["x", "y", "z"]
    assert main(["adopt", str(tmp_path / "b"), "--train", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_adopting_records_of_two_sizes_names_the_record(tmp_path):
    from ray_ingest.errors import ManifestError
    from ray_ingest.format.adopt import adopt_tfrecords
    from ray_ingest.format.example import encode_image_example
    from ray_ingest.format.framing import frame_record

    path = tmp_path / "mixed.tfrecord"
    recs = [encode_image_example(encoded=jpeg_bytes(random_rgb(h, 16)), image_format="jpeg",
                                 height=h, width=16, channels=3, label=0, class_text="a",
                                 filename="x") for h in (16, 16, 20)]
    path.write_bytes(b"".join(frame_record(r) for r in recs))
    with pytest.raises(ManifestError, match=r"mixed.tfrecord: record 2: .*first record's"):
        adopt_tfrecords(str(tmp_path / "out"), {"train": [str(path)]})


# ---- the peer rows of the throughput job -----------------------------------------------------


def test_missing_peers_are_skipped_with_one_line_each(converted, monkeypatch, capsys):
    from ray_ingest.bench import BenchConfig, format_table, peers, run_bench
    from ray_ingest.bench.rows import LIMIT

    absent = {name: (make, lambda: "its package not installed (pip install ...)")
              for name, (make, _probe) in peers._PEERS.items()}
    monkeypatch.setattr(peers, "_PEERS", absent)
    cfg = BenchConfig(data=str(converted["jpeg"]), images=32, warmup=8, repeats=1,
                      batch_size=16, rows=[LIMIT], peers=True)
    assert cfg.row_names([LIMIT]) == [LIMIT, *peers.PEER_ROWS]
    report = run_bench(cfg, show_progress=False)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("skipping")]
    assert len(printed) == len(peers.PEER_ROWS)
    assert all("not installed" in ln for ln in printed)
    assert [r["name"] for r in report["rows"]] == [LIMIT]
    assert set(report["skipped_rows"]) == set(peers.PEER_ROWS)
    assert format_table(report).count("not run: ") == len(peers.PEER_ROWS)


def test_peer_rows_are_named_and_checked_like_ours():
    from ray_ingest.bench import BenchConfig, peers
    from ray_ingest.cli import build_parser
    from ray_ingest.errors import ConfigError

    args = build_parser().parse_args(["bench", "d", "--peers", "--rows",
                                      ",".join(peers.PEER_ROWS[:2])])
    assert args.peers and args.rows == list(peers.PEER_ROWS[:2])
    assert BenchConfig(data="d", rows=list(peers.PEER_ROWS)).row_names([]) == list(
        peers.PEER_ROWS)
    with pytest.raises(ConfigError, match="unknown rows"):
        BenchConfig(data="d", rows=["DALI"])


def test_the_torch_file_loader_yields_the_records_pixels(converted, tmp_path):
    pytest.importorskip("torch", reason="torch is not installed")
    import torch.utils.data as tud

    from ray_ingest.bench.peers.common import decode_jpegs, simplejpeg_collate
    from ray_ingest.bench.peers.torch_files import _Files, write_files

    stored = list(iter_records(str(converted["jpeg"]), "train"))[:10]
    encoded = [r.encoded for r in stored]
    labels = np.array([r.label for r in stored])
    paths = write_files(str(tmp_path), encoded, labels)
    want = decode_jpegs(encoded)
    for load, collate in (("simplejpeg", simplejpeg_collate), ("pil", None)):
        images, got_labels = next(iter(tud.DataLoader(_Files(paths, labels, load),
                                                      batch_size=10, collate_fn=collate)))
        assert got_labels.tolist() == labels.tolist()
        diff = np.abs(images.numpy().astype(int) - want).max()
        assert diff <= (0 if load == "simplejpeg" else 8), (load, diff)


def test_the_mds_copy_holds_the_same_bytes(converted, tmp_path):
    from ray_ingest.bench.peers import mosaic

    why = mosaic.missing()
    if why:
        pytest.skip(f"MosaicML Streaming cannot run here: {why}")
    from streaming import StreamingDataset

    from ray_ingest.bench.peers.mosaic import write_mds

    stored = list(iter_records(str(converted["jpeg"]), "train"))
    write_mds(str(tmp_path / "mds"), [r.encoded for r in stored], [r.label for r in stored])
    ds = StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=8)
    got = [(bytes(s["jpeg"]), int(s["label"])) for s in ds]
    assert got == [(r.encoded, r.label) for r in stored]


@pytest.mark.slow
def test_every_installed_peer_row_streams_beside_ours(converted, tmp_path):
    from ray_ingest.bench import BenchConfig, peers, run_bench
    from ray_ingest.bench.rows import LIMIT

    # one row of each peer module (the PIL and torchvision loaders differ from the simplejpeg
    # one only in their dataset's decode, tested above)
    wanted = [peers.dali.ROW, peers.mosaic.ROW, peers.torch_files.SIMPLEJPEG_ROW]
    runnable, skipped = peers.split_available(wanted)
    if not runnable:
        pytest.skip(f"no peer loader runs here: {skipped}")
    cfg = BenchConfig(data=str(converted["jpeg"]), images=64, warmup=16, repeats=1,
                      batch_size=16, rows=[LIMIT] + wanted, out=str(tmp_path / "r"))
    report = run_bench(cfg, show_progress=False)
    by_name = {r["name"]: r for r in report["rows"]}
    for name in runnable:
        assert by_name[name]["images_per_second"] > 0 and by_name[name]["group"] == "peer"
    assert "NVIDIA DALI" in (tmp_path / "r" / "report.md").read_text() or (
        peers.dali.ROW not in runnable)

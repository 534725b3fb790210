"""Converting a Ray Dataset (Parquet of image bytes, Ray's read_images, WebDataset tars, a
HuggingFace dataset): the same records, rejects and manifest as a conversion of files."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import jpeg_bytes, random_rgb, stored
from ray_ingest.cli import main
from ray_ingest.convert.from_dataset import convert_dataset, is_parquet_source
from ray_ingest.errors import ConfigError, SourceError
from ray_ingest.format import manifest as mf

pytestmark = pytest.mark.usefixtures("ray_session")


def _tree_rows(tree):
    """(relpath, class name, bytes) of every image of a class-folder tree, sorted."""
    rows = []
    for cls in sorted(os.listdir(tree)):
        for name in sorted(os.listdir(tree / cls)):
            rows.append((f"{cls}/{name}", cls, (tree / cls / name).read_bytes()))
    return rows


def _records_by_name(path):
    m = mf.read_manifest(str(path))
    out = {}
    for split in m.splits:
        for r in stored(path, split)[1]:
            out[r.filename] = (split, r.label, r.class_text, r.encoded)
    return m, out


def test_parquet_of_image_bytes_matches_the_folder_conversion(synth_tree, converted, tmp_path,
                                                              capsys):
    rows = _tree_rows(synth_tree)
    full = jpeg_bytes(random_rgb(40, 40, seed=9))
    bad = [("bad/truncated.jpg", rows[0][1], full[: len(full) // 2]),
           ("bad/no-label.jpg", None, full),
           ("bad/no-image.jpg", rows[0][1], None)]
    table = pa.table({
        "path": [r[0] for r in rows + bad],
        "image": pa.array([r[2] for r in rows + bad], pa.binary()),
        "label": [r[1] for r in rows + bad],
    })
    src = tmp_path / "data"
    src.mkdir()
    pq.write_table(table.slice(0, 100), src / "part-0.parquet")
    pq.write_table(table.slice(100), src / "part-1.parquet")
    assert is_parquet_source(str(src))
    out = tmp_path / "out"
    rc = main(["convert", str(src), str(out), "--size", "32", "--val-fraction", "0.2",
               "--id-column", "path", "--max-reject-fraction", "0.05"])
    assert rc == 0, capsys.readouterr().err
    assert "163 images in, 160 written, 3 rejected" in capsys.readouterr().out

    m, got = _records_by_name(out)
    ref_m, want = _records_by_name(converted["jpeg"])
    assert m.class_names == ref_m.class_names
    assert got == want  # same names, splits, labels, class names and encoded pixels
    for split in m.splits:
        assert m.class_counts(split) == ref_m.class_counts(split)
    assert m.data["source"] == str(src)
    assert m.data["reject_reasons"] == {"corrupt-image": 1, "missing-image": 1,
                                        "missing-label": 1}
    rejects = [json.loads(x) for x in (out / mf.REJECTS_NAME).read_text().splitlines()]
    assert {r["path"]: r["reason"] for r in rejects} == {
        "bad/truncated.jpg": "corrupt-image", "bad/no-label.jpg": "missing-label",
        "bad/no-image.jpg": "missing-image"}


def test_integer_labels_with_class_names_and_image_structs(tmp_path):
    """HuggingFace's image struct ({bytes, path}), integer ids named by ``class_names``; an id
    out of range is rejected, a path is read, the split follows the id column."""
    import ray

    images = [jpeg_bytes(random_rgb(24, 30, seed=i)) for i in range(12)]
    on_disk = tmp_path / "img.jpg"
    on_disk.write_bytes(images[0])
    cells = [{"bytes": b, "path": f"x{i}.jpg"} for i, b in enumerate(images)]
    cells[1] = {"bytes": None, "path": str(on_disk)}
    labels = [i % 3 for i in range(12)]
    labels[2] = 7
    ds = ray.data.from_items([{"image": c, "label": lab, "key": f"k{i}"}
                              for i, (c, lab) in enumerate(zip(cells, labels))])
    out = tmp_path / "out"
    report = convert_dataset(ds, str(out), image_column="image", label_column="label",
                             id_column="key", class_names=["cat", "dog", "emu"], size=16,
                             encoding="raw", val_fraction=0.3, max_reject_fraction=0.1)
    assert (report.num_inputs, report.num_written, report.num_rejected) == (12, 11, 1)
    m = mf.read_manifest(str(out))
    assert m.class_names == ["cat", "dog", "emu"]
    assert m.data["reject_reasons"] == {"unknown-label": 1}
    from ray_ingest.convert.sources import split_of

    seen = {}
    for split in m.splits:
        for r in stored(out, split)[1]:
            seen[r.filename] = (split, r.label, r.class_text)
    assert set(seen) == {f"k{i}" for i in range(12)} - {"k2"}
    for i in range(12):
        if i != 2:
            assert seen[f"k{i}"] == (split_of(f"k{i}", 0, 0.3), labels[i],
                                     ["cat", "dog", "emu"][labels[i]])


def test_ray_read_images_pixel_arrays(synth_tree, tmp_path):
    """Decoded pixels (Ray's read_images, as the README shows it) go through the same resize
    and encoding; string labels become sorted class names."""
    import ray

    ds = ray.data.read_images(str(synth_tree), include_paths=True).map_batches(
        lambda b: {**b, "label": [p.split("/")[-2] for p in b["path"]]})
    out = tmp_path / "out"
    report = convert_dataset(ds, str(out), id_column="path", size=32, encoding="raw",
                             val_fraction=0.2)
    assert (report.num_written, report.num_rejected) == (160, 0)
    m = mf.read_manifest(str(out))
    assert m.class_names == sorted(os.listdir(synth_tree))
    records = [r for s in m.splits for r in stored(out, s)[1]]
    assert sorted(os.path.relpath(r.filename, synth_tree) for r in records) == sorted(
        f"{c}/{n}" for c in m.class_names for n in os.listdir(synth_tree / c))
    for r in records:
        assert r.class_text == os.path.basename(os.path.dirname(r.filename))
        pixels = np.frombuffer(r.encoded, np.uint8).reshape(32, 32, 3)
        assert pixels.std() > 5  # an image, not a blank


def test_webdataset_tars(tmp_path):
    wds = pytest.importorskip("webdataset", reason="webdataset is not installed")
    import ray

    tar = tmp_path / "shard-000000.tar"
    with wds.TarWriter(str(tar)) as w:
        for i in range(10):
            w.write({"__key__": f"s{i:04d}", "jpg": jpeg_bytes(random_rgb(20, 30, seed=i)),
                     "cls": i % 2})
    ds = ray.data.read_webdataset(str(tar))
    out = tmp_path / "out"
    report = convert_dataset(ds, str(out), image_column="jpg", label_column="cls",
                             id_column="__key__", size=16, val_fraction=0.0)
    assert report.num_written == 10
    m, records = stored(out, "train")
    assert m.class_names == ["0", "1"]
    assert sorted((r.filename, r.label) for r in records) == [(f"s{i:04d}", i % 2)
                                                              for i in range(10)]


def test_huggingface_dataset(tmp_path):
    datasets = pytest.importorskip("datasets", reason="HuggingFace datasets is not installed")
    import ray
    from PIL import Image

    hf = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(random_rgb(20, 30, seed=i)) for i in range(8)],
         "label": [i % 2 for i in range(8)]},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(names=["cat", "dog"])}))
    out = tmp_path / "out"
    report = convert_dataset(ray.data.from_huggingface(hf), str(out),
                             class_names=hf.features["label"].names, size=16, val_fraction=0.0)
    assert report.num_written == 8
    m, records = stored(out, "train")
    assert m.class_names == ["cat", "dog"]
    assert sorted(r.class_text for r in records) == ["cat"] * 4 + ["dog"] * 4
    # No id column and no path in the cells: each record is named by a hash of its image.
    assert len({r.filename for r in records}) == 8
    assert all(re.fullmatch(r"content:[0-9a-f]{16}", r.filename) for r in records)


def test_missing_column_and_mixed_labels_are_refused(tmp_path):
    import ray

    ds = ray.data.from_items([{"image": b"x", "label": 1}])
    with pytest.raises(ConfigError, match="no label column 'cls'"):
        convert_dataset(ds, str(tmp_path / "a"), label_column="cls")
    ds = ray.data.from_items([{"image": b"x", "label": 1.5}, {"image": b"y", "label": 2.0}])
    with pytest.raises(SourceError, match="integer class ids or all class names"):
        convert_dataset(ds, str(tmp_path / "b"))

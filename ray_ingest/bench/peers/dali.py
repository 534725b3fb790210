"""NVIDIA DALI's row: its CPU-only pipeline (``device_id=None``, ``threads = cores``) reading
**our** shards with **our** ``.idx`` files (the index is DALI's own ``tfrecord2idx`` format:
one ``byte_offset record_length`` line per record) through ``fn.readers.tfrecord``, and
decoding with ``fn.decoders.image(device="cpu")`` (libjpeg-turbo through nvImageCodec).

:func:`pipeline` builds the reader and hands the encoded images to ``decode``: a DALI row of
another decoder (``fn.decoders.image_random_crop``, the peer of a crop-at-decode read) is
that function and a name more.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional

from ray_ingest import fs
from ray_ingest.bench.measure import Variant, timed_stream
from ray_ingest.bench.peers.common import GROUP, missing_modules
from ray_ingest.format import keys

ROW = "NVIDIA DALI CPU pipeline (our shards + .idx)"


def missing() -> Optional[str]:
    return missing_modules("nvidia.dali")


def index_files(ctx) -> List[str]:
    return [fs.join(ctx.manifest.root, s.index) for s in ctx.manifest.shards(ctx.split)]


def decode_image(encoded):
    """The decoder of the plain row: whole images, RGB, on the CPU."""
    from nvidia.dali import fn, types

    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


def decode_random_crop(size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Callable:
    """The decoder of the random-resized-crop row, the peer of a read with
    ``crop=RandomResizedCrop(size, scale, ratio)``: ``fn.decoders.image_random_crop`` (decodes
    only the drawn box; 10 tries, like torchvision) and ``fn.resize`` to ``size x size``."""

    def decode(encoded):
        from nvidia.dali import fn, types

        boxes = fn.decoders.image_random_crop(
            encoded, device="cpu", output_type=types.RGB, random_area=list(scale),
            random_aspect_ratio=list(ratio), num_attempts=10)
        return fn.resize(boxes, resize_x=size, resize_y=size)

    return decode


def pipeline(files: List[str], indexes: List[str], batch_size: int, threads: int,
             decode: Callable = decode_image, prefetch: int = 2, shuffle: bool = False):
    """A built CPU-only DALI pipeline yielding ``(images, labels)`` batches of the records of
    ``files`` (indexed by ``indexes``), epoch after epoch."""
    import nvidia.dali.tfrecord as tfrec
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=None,
                  prefetch_queue_depth=prefetch)
    def records():
        rec = fn.readers.tfrecord(
            path=files, index_path=indexes, random_shuffle=shuffle, name="reader",
            features={keys.ENCODED: tfrec.FixedLenFeature((), tfrec.string, ""),
                      keys.LABEL: tfrec.FixedLenFeature([1], tfrec.int64, -1)})
        return decode(rec[keys.ENCODED]), rec[keys.LABEL]

    pipe = records()
    pipe.build()
    return pipe


def batch_counts(pipe) -> Iterator[int]:
    """Batch sizes of a pipeline's stream; each batch's images are taken as one dense array
    (the zero-copy view a consumer gets)."""
    while True:
        images, labels = pipe.run()
        images.as_tensor()
        yield len(labels)


def make_row(ctx) -> Variant:
    from ray_ingest.runtime import usable_cores

    pipe = pipeline(ctx.files, index_files(ctx), ctx.batch_size, usable_cores())
    return Variant(ROW, GROUP, timed_stream(lambda: batch_counts(pipe)), warmup=ctx.warmup,
                   note="device_id=None, threads = cores, our shards and .idx files")

"""The classic tf.data study ("Practical ML for Computer Vision", ch. 7, "Efficient Ingest"):
Plain, Parallel Map, Interleave, Interleave + Parallel Map, + prefetch, + batch(32) before a
vectorized parse, + cache — each over the same shards, repeated forever."""

from __future__ import annotations

from typing import Iterator, List

from ray_ingest.format import keys
from ray_ingest.format.manifest import Manifest

TF_ROWS = (
    "tf.data Plain",
    "tf.data Parallel Map",
    "tf.data Interleave",
    "tf.data Interleave + Parallel Map",
    "tf.data + prefetch",
    "tf.data + batch(32) vectorized parse",
    "tf.data + cache",
)
CACHE_ROW = TF_ROWS[-1]
BATCHED_ROW = TF_ROWS[5]


def feature_spec(names=("encoded", "label")):
    """``tf.io.parse_example`` features for the given short names of :data:`keys.FEATURES`."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "int64": tf.int64}
    return {keys.FEATURES[n][0]: tf.io.FixedLenFeature([], dtypes[keys.FEATURES[n][1]])
            for n in names}


def tf_dataset(variant: str, files: List[str], m: Manifest):
    """One of the study's tf.data pipelines over ``files``, repeated forever."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    features = feature_spec()
    shape = [m.height, m.width, m.channels]

    def decode(encoded):
        if m.encoding == keys.FORMAT_JPEG:
            img = tf.io.decode_jpeg(encoded, channels=3)
            return tf.ensure_shape(img, shape)
        return tf.reshape(tf.io.decode_raw(encoded, tf.uint8), shape)

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        return decode(ex[keys.ENCODED]), ex[keys.LABEL]

    def parse_batch(serialized):
        ex = tf.io.parse_example(serialized, features)
        imgs = tf.map_fn(decode, ex[keys.ENCODED], fn_output_signature=tf.uint8)
        return imgs, ex[keys.LABEL]

    def interleaved():
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, len(files)),
            num_parallel_calls=autotune, deterministic=False)

    if variant == TF_ROWS[0]:
        return tf.data.TFRecordDataset(files).repeat().map(parse)
    if variant == TF_ROWS[1]:
        return tf.data.TFRecordDataset(files).repeat().map(parse, num_parallel_calls=autotune)
    if variant == TF_ROWS[2]:
        return interleaved().repeat().map(parse)
    if variant == TF_ROWS[3]:
        return interleaved().repeat().map(parse, num_parallel_calls=autotune)
    if variant == TF_ROWS[4]:
        return interleaved().repeat().map(parse, num_parallel_calls=autotune).prefetch(autotune)
    if variant == BATCHED_ROW:
        return (interleaved().repeat().batch(32)
                .map(parse_batch, num_parallel_calls=autotune).prefetch(autotune))
    if variant == CACHE_ROW:
        return (interleaved().map(parse, num_parallel_calls=autotune).cache().repeat()
                .prefetch(autotune))
    raise ValueError(f"not a tf.data row: {variant!r}")


def tf_counts(ds, batched: bool) -> Iterator[int]:
    for img, _label in ds:
        yield int(img.shape[0]) if batched else 1


def has_tensorflow() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True

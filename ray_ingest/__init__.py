"""ray-ingest: images → TFRecord shards → streamed batches → training, on Ray.

The core (synth, convert, read) needs neither TensorFlow nor torch; heavy modules are imported
where they are used.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy public API, so ``import ray_ingest`` stays cheap
    if name == "convert":
        from ray_ingest.convert import convert

        return convert
    if name == "synthesize":
        from ray_ingest.synth import synthesize

        return synthesize
    if name in ("read_records", "iter_images"):
        from ray_ingest import read

        return getattr(read, name)
    raise AttributeError(f"module 'ray_ingest' has no attribute {name!r}")


__all__ = ["convert", "iter_images", "read_records", "synthesize", "__version__"]

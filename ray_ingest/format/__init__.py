"""Everything about the files on disk, without TensorFlow: feature keys and names
(:mod:`keys`), TFRecord framing and the DALI-style ``.idx`` index (:mod:`framing`), the
``tf.train.Example`` codec (:mod:`example`, protobuf classes generated from a wire-compatible
copy of TensorFlow's ``example.proto``), the manifest and output names (:mod:`manifest`),
what a record must be and the checks of records and shards (:mod:`check`), iteration over a
split's records (:mod:`records`), and writing a shard set: staged shards rolled by bytes
(:mod:`staging`), the commit that puts them in place with the manifest last (:mod:`commit`),
the one-writer lock of an output folder (:mod:`lock`), and
:class:`~ray_ingest.format.writer.ShardSetWriter`, which writes from any Python loop
(:mod:`writer`; a conversion's Ray Datasink uses the same staging, commit and lock).

Nothing here imports from the conversion, reading or training layers.
"""

"""Everything about the files on disk, without TensorFlow: feature keys and names
(:mod:`keys`), TFRecord framing and the DALI-style ``.idx`` index (:mod:`framing`), the
``tf.train.Example`` codec (:mod:`example`, protobuf classes generated from a wire-compatible
copy of TensorFlow's ``example.proto``), the manifest and output names (:mod:`manifest`),
what a record must be and the checks of records and shards (:mod:`check`), and iteration over a
split's records (:mod:`records`).

Nothing here imports from the conversion, reading or training layers.
"""

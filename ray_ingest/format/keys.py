"""The names of things on disk and in batches, declared once: feature keys, their types,
splits, and the columns of the reader's batches.

The feature keys are TensorFlow's standard image-classification keys (as in TF Model Garden's
``tf_example_feature_key.py``), so any TF reader understands our shards.
"""

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
LABEL = "image/class/label"
CLASS_TEXT = "image/class/text"
FILENAME = "image/filename"

#: Every feature of a converted record: short name (as in the manifest's ``feature_keys``)
#: -> (key, value type: "bytes" or "int64").
FEATURES = {
    "encoded": (ENCODED, "bytes"),
    "format": (FORMAT, "bytes"),
    "height": (HEIGHT, "int64"),
    "width": (WIDTH, "int64"),
    "channels": (CHANNELS, "int64"),
    "label": (LABEL, "int64"),
    "class_text": (CLASS_TEXT, "bytes"),
    "filename": (FILENAME, "bytes"),
}
#: Short name -> key, as recorded in the manifest.
FEATURE_KEYS = {name: key for name, (key, _) in FEATURES.items()}

#: Values of ``image/format``.
FORMAT_JPEG = "jpeg"
FORMAT_RAW = "raw"
ENCODINGS = (FORMAT_JPEG, FORMAT_RAW)

#: The splits a conversion writes, in manifest order.
SPLITS = ("train", "val")

#: Columns of the batches the reader yields.
IMAGE_COLUMN = "image"  # uint8 [N, H, W, C]
LABEL_COLUMN = "label"  # int64 [N]
ENCODED_COLUMN = "encoded"  # JPEG bytes, before a consumer decodes them
FILENAME_COLUMN = "filename"  # image/filename, with ``with_filename``

"""The feature keys of our records, declared once.

They are TensorFlow's standard image-classification keys (as in TF Model Garden's
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

#: Values of ``image/format``.
FORMAT_JPEG = "jpeg"
FORMAT_RAW = "raw"
ENCODINGS = (FORMAT_JPEG, FORMAT_RAW)

#: Every key a converted record carries.
ALL_KEYS = (ENCODED, FORMAT, HEIGHT, WIDTH, CHANNELS, LABEL, CLASS_TEXT, FILENAME)

#: Column names of the batches our reader yields.
IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"

"""The record codec: TFRecord framing and ``tf.train.Example`` encoding, without TensorFlow.

``framing`` reads and writes TFRecord files (length, masked CRC32C of the length, data,
masked CRC32C of the data) and their DALI-style ``.idx`` index; ``example`` serializes and
parses ``tf.train.Example`` with protobuf classes generated from a wire-compatible copy of
TensorFlow's ``example.proto`` (tested against TensorFlow both ways). No TensorFlow needed.
"""

from ray_ingest.codec.example import (
    ExampleDecodeError,
    ImageRecord,
    decode_example,
    decode_image_example,
    encode_example,
    encode_image_example,
    parse_example,
)
from ray_ingest.codec.framing import (
    RecordCorruptError,
    frame_record,
    index_lines,
    masked_crc32c,
    read_index,
    scan_records,
    TFRecordWriter,
)

__all__ = [
    "ExampleDecodeError",
    "ImageRecord",
    "RecordCorruptError",
    "TFRecordWriter",
    "decode_example",
    "decode_image_example",
    "encode_example",
    "encode_image_example",
    "frame_record",
    "index_lines",
    "masked_crc32c",
    "parse_example",
    "read_index",
    "scan_records",
]

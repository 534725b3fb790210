"""``tf.train.Example`` serialization without TensorFlow.

Built on protobuf classes generated from a wire-compatible copy of TensorFlow's
``example.proto`` / ``feature.proto`` (``proto/example.proto``; regenerate with
``make proto``). protobuf's C implementation (upb) keeps parsing off the reader's critical
path (figures in ``benchmarks/RESULTS.md``); tests check both directions against TensorFlow's
own classes.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Union

from google.protobuf.message import DecodeError

from ray_ingest.errors import ExampleDecodeError
from ray_ingest.format import keys
from ray_ingest.format.proto import example_pb2

Example = example_pb2.Example

FeatureValue = Union[bytes, bytearray, memoryview, str, int, float, list, tuple]


def _fill(feature, key: str, value) -> None:
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        value = [value]
    elif isinstance(value, bool):
        raise TypeError(f"feature {key!r}: bool is ambiguous, pass an int")
    elif isinstance(value, (int, float)):
        value = [value]
    elif not isinstance(value, (list, tuple)):
        import numpy as np  # numpy scalars and arrays

        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"feature {key!r}: unsupported value type {type(value).__name__}")
        value = arr.ravel().tolist()
    if not value:
        raise ValueError(f"feature {key!r}: empty value list (its type would be ambiguous)")
    first = value[0]
    if isinstance(first, (bytes, bytearray, memoryview, str)):
        feature.bytes_list.value.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value
        )
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        feature.int64_list.value.extend(value)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        feature.float_list.value.extend(value)
    else:
        raise TypeError(f"feature {key!r}: mixed or unsupported value types")


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serializes a ``tf.train.Example`` from ``{key: value}``.

    ``bytes``/``str`` (or lists of them) become ``bytes_list``, ``int`` become ``int64_list``,
    ``float`` become ``float_list``; numpy numbers and arrays are accepted too.
    """
    example = Example()
    fmap = example.features.feature
    for key, value in features.items():
        _fill(fmap[key], key, value)
    return example.SerializeToString()


def encode_image_example(
    *,
    encoded: bytes,
    image_format: str,
    height: int,
    width: int,
    channels: int,
    label: int,
    class_text: str,
    filename: str,
) -> bytes:
    """The record our conversion writes for one image, with the standard feature keys."""
    example = Example()
    f = example.features.feature
    f[keys.ENCODED].bytes_list.value.append(encoded)
    f[keys.FORMAT].bytes_list.value.append(image_format.encode())
    f[keys.HEIGHT].int64_list.value.append(height)
    f[keys.WIDTH].int64_list.value.append(width)
    f[keys.CHANNELS].int64_list.value.append(channels)
    f[keys.LABEL].int64_list.value.append(label)
    f[keys.CLASS_TEXT].bytes_list.value.append(class_text.encode("utf-8"))
    f[keys.FILENAME].bytes_list.value.append(filename.encode("utf-8"))
    return example.SerializeToString()


def parse_example(data) -> Example:
    """Parses serialized bytes (or a memoryview) into an ``Example`` message."""
    try:
        return Example.FromString(data)
    except (DecodeError, TypeError) as e:
        raise ExampleDecodeError(f"not a tf.train.Example: {e}") from None


def decode_example(data) -> Dict[str, List]:
    """Parses a serialized ``tf.train.Example`` into ``{key: [values...]}`` (bytes, int, float)."""
    out: Dict[str, List] = {}
    for key, feature in parse_example(data).features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value) if kind else []
    return out


_ENCODED_KEY = keys.ENCODED.encode()


def _varint_at(buf, pos: int):
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise ExampleDecodeError("varint too long")


def split_encoded(data):
    """``(features, payload)``: the record's other features, parsed, and a zero-copy
    ``memoryview`` of its ``image/encoded`` value.

    Walks the map entries of the serialized ``Example`` (a few varints each) to find the one
    keyed ``image/encoded`` and points into it, and parses only the small rest with protobuf,
    so the pixels are never copied out of the read buffer. Returns ``None`` when the record is
    not in the plain shape that protobuf writers produce (then parse it whole).
    """
    mv = data if isinstance(data, memoryview) else memoryview(data)
    try:
        end = len(mv)
        if end < 2 or mv[0] != 0x0A:
            return None
        flen, pos = _varint_at(mv, 1)
        if pos + flen != end:
            return None  # other top-level fields: not the plain shape
        payload = None
        rest = []
        while pos < end:
            if mv[pos] != 0x0A:
                return None
            elen, body = _varint_at(mv, pos + 1)
            eend = body + elen
            if eend > end:
                return None
            klen = len(_ENCODED_KEY)
            if (payload is None and mv[body] == 0x0A and mv[body + 1] == klen
                    and mv[body + 2 : body + 2 + klen] == _ENCODED_KEY):
                p = body + 2 + klen
                if mv[p] != 0x12:
                    return None
                _flen, p = _varint_at(mv, p + 1)  # Feature
                if mv[p] != 0x0A:
                    return None  # not a bytes_list
                _blen, p = _varint_at(mv, p + 1)  # BytesList
                if mv[p] != 0x0A:
                    return None
                vlen, p = _varint_at(mv, p + 1)  # the one value
                if p + vlen != eend:
                    return None  # several values or trailing fields
                payload = mv[p:eend]
            else:
                rest.append(mv[pos:eend])
            pos = eend
        if payload is None:
            return None
        return example_pb2.Features.FromString(b"".join(rest)), payload
    except (IndexError, DecodeError, ExampleDecodeError):
        return None


class ImageRecord(NamedTuple):
    encoded: bytes
    image_format: str
    height: int
    width: int
    channels: int
    label: int
    class_text: str
    filename: str


def _single(fmap, key: str, kind: str):
    if key not in fmap:
        raise ExampleDecodeError(f"missing feature {key!r}")
    values = getattr(fmap[key], kind).value
    if len(values) != 1:
        raise ExampleDecodeError(f"feature {key!r} must hold one {kind} value, holds {len(values)}")
    return values[0]


def decode_image_example(data) -> ImageRecord:
    """Decodes one of our image records; raises naming the missing or malformed feature."""
    f = parse_example(data).features.feature
    return ImageRecord(
        encoded=_single(f, keys.ENCODED, "bytes_list"),
        image_format=_single(f, keys.FORMAT, "bytes_list").decode(),
        height=_single(f, keys.HEIGHT, "int64_list"),
        width=_single(f, keys.WIDTH, "int64_list"),
        channels=_single(f, keys.CHANNELS, "int64_list"),
        label=_single(f, keys.LABEL, "int64_list"),
        class_text=_single(f, keys.CLASS_TEXT, "bytes_list").decode("utf-8", "replace"),
        filename=_single(f, keys.FILENAME, "bytes_list").decode("utf-8", "replace"),
    )

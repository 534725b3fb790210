"""Writing a shard set from any Python loop, without Ray: :class:`ShardSetWriter`.

The writer holds OUT's lock (:class:`~ray_ingest.format.lock.OutputLock`, the one a conversion
takes) from ``__enter__`` to ``__exit__``, stages its shards as a conversion's write tasks do
(:mod:`~ray_ingest.format.staging`: rolled by bytes, ``.idx`` and SHA-256 while writing), and
commits with the conversion's own commit (:func:`~ray_ingest.format.commit.commit_output`):
final names, ``rejects.jsonl``, ``manifest.json`` last, an overwrite atomic as a whole. An
exception inside the ``with`` block removes the staging folder and leaves OUT as it was.

Every record is checked before it is written (a record that breaks a rule raises and is not
written, so the loop may catch the error and go on), against the same rules that
:func:`~ray_ingest.format.verify.verify_output` checks afterwards.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Dict, Optional, Sequence, Union

from ray_ingest import fs
from ray_ingest.errors import (ConfigError, ConversionError, FieldName,
                               RecordMismatchError)
from ray_ingest.format import commit, keys
from ray_ingest.format import manifest as mf
from ray_ingest.format.check import RecordSpec, check_record
from ray_ingest.format.example import encode_image_example
from ray_ingest.format.lock import OutputLock, ensure_owner
from ray_ingest.format.staging import StagedResult, StagingWriter, staging_dir

#: The limits of ``max_shard_bytes`` (those of ``ConvertOptions.shard_size_mb``), and its default.
MIN_SHARD_BYTES = 10_000
MAX_SHARD_BYTES = 10_000_000_000
DEFAULT_SHARD_BYTES = 100_000_000
#: The largest side a JPEG can have.
MAX_SIDE = 65535
#: ``resize_mode`` in the manifest of fixed-size shard sets this writer made: every image is
#: ``size`` x ``size`` as its caller gave it.
AS_GIVEN = "as-given"

Label = Union[int, str]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _side(name: str, value, low: int = 1) -> None:
    if value is not None and (not _is_int(value) or not low <= value <= MAX_SIDE):
        raise ConfigError(FieldName(name), f" must be an integer from {low} to {MAX_SIDE} or "
                          f"None, got {value!r}")


class ShardSetWriter:
    """``with ShardSetWriter(out=..., class_names=[...]) as w: w.write_image(jpeg, ...)``.

    * ``out``: the folder (a path or URI) of the shard set; created if needed.
    * ``class_names``: the class of each class id (labels are ids ``0..K-1``, or these names).
    * ``encoding``: ``"jpeg"`` or ``"raw"`` (``uint8`` pixels, fixed size only).
    * ``size``: None (default) for whole images, each record its own height and width
      (bounded by ``max_side`` / ``short_side`` when given); an integer for fixed
      ``size`` x ``size`` images.
    * ``quality``: the JPEG quality of the images, when known (the manifest records it).
    * ``max_shard_bytes``: a shard rolls over before it would pass this size.
    * ``checksums``: store each shard's SHA-256 in the manifest.
    * ``overwrite``: replace a finished shard set in ``out`` (refused otherwise).
    * ``max_reject_fraction``: fail the commit (no manifest) when more of the inputs than
      this were passed to :meth:`reject`.
    * ``source``: what the manifest names as the source of the data.

    After a commit :attr:`result` is the manifest written.
    """

    def __init__(self, *, out: Union[str, "os.PathLike[str]"], class_names: Sequence[str],
                 encoding: str = keys.FORMAT_JPEG, size: Optional[int] = None,
                 max_side: Optional[int] = None, short_side: Optional[int] = None,
                 quality: Optional[int] = None, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
                 checksums: bool = False, overwrite: bool = False,
                 max_reject_fraction: float = 1.0, source: str = "ShardSetWriter"):
        if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
            raise ConfigError(FieldName("out"), f" must be a folder path or URI, got {out!r}")
        if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
            raise ConfigError(FieldName("class_names"), " must be a list of class names, got "
                              f"{class_names!r}")
        names = list(class_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(FieldName("class_names"), " must be a non-empty list of "
                              f"non-empty strings, got {names!r}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(FieldName("class_names"), f" lists {twice[0]!r} more than once; "
                              "each name names one class id")
        if encoding not in keys.ENCODINGS:
            raise ConfigError(FieldName("encoding"), f" must be one of {keys.ENCODINGS}, got "
                              f"{encoding!r}")
        _side("size", size)
        _side("max_side", max_side)
        _side("short_side", short_side)
        if size is not None and (max_side, short_side) != (None, None):
            raise ConfigError(FieldName("max_side"), " / ", FieldName("short_side"),
                              " bound whole images (", FieldName("size"), " None); fixed "
                              f"{size} x {size} images take neither")
        if size is None and encoding != keys.FORMAT_JPEG:
            raise ConfigError(FieldName("encoding"), f" {encoding!r} needs a fixed ",
                              FieldName("size"), "; whole images are stored as JPEG")
        if quality is not None and (not _is_int(quality) or not 1 <= quality <= 100
                                    or encoding != keys.FORMAT_JPEG):
            raise ConfigError(FieldName("quality"), " must be a JPEG quality from 1 to 100 "
                              f"(encoding 'jpeg') or None, got {quality!r}")
        if not _is_int(max_shard_bytes) or not (MIN_SHARD_BYTES <= max_shard_bytes
                                                <= MAX_SHARD_BYTES):
            raise ConfigError(FieldName("max_shard_bytes"), f" must be an integer from "
                              f"{MIN_SHARD_BYTES} to {MAX_SHARD_BYTES}, got {max_shard_bytes!r}")
        for name, value in (("checksums", checksums), ("overwrite", overwrite)):
            if not isinstance(value, bool):
                raise ConfigError(FieldName(name), f" must be True or False, got {value!r}")
        if (not isinstance(max_reject_fraction, (int, float)) or isinstance(
                max_reject_fraction, bool) or not 0.0 <= max_reject_fraction <= 1.0):
            raise ConfigError(FieldName("max_reject_fraction"), " must be a number in [0, 1], "
                              f"got {max_reject_fraction!r}")
        if not isinstance(source, str):
            raise ConfigError(FieldName("source"), f" must be a string, got {source!r}")
        self.out = fs.normalize(os.fspath(out))
        self.class_names = names
        self.encoding, self.size = encoding, size
        self.max_side, self.short_side = max_side, short_side
        self.max_shard_bytes, self.checksums = max_shard_bytes, checksums
        self.overwrite, self.max_reject_fraction = overwrite, float(max_reject_fraction)
        self.manifest_fields = mf.header(
            source=source, encoding=encoding, size=size,
            resize_mode=mf.KEEP if size is None else AS_GIVEN, quality=quality, seed=None,
            val_fraction=None, shard_size_mb=max_shard_bytes / 1e6, class_names=names,
            max_side=max_side, short_side=short_side)
        self.run_id = uuid.uuid4().hex[:12]
        self.staging = staging_dir(self.out, self.run_id)
        #: The manifest written, once the ``with`` block has committed.
        self.result: Optional[Dict[str, Any]] = None
        self._ids = {n: i for i, n in enumerate(names)}
        self._spec = RecordSpec(encoding, size, size, 3, len(names), 0, None, max_side or 0,
                                short_side or 0, tuple(names))
        self._lock: Optional[OutputLock] = None
        self._staged: Optional[StagingWriter] = None
        self._counts = StagedResult()
        #: The error of a write that failed: nothing is committed after it.
        self._failed: Optional[BaseException] = None
        self._inputs = 0

    # -- the block ----------------------------------------------------------------------
    def __enter__(self) -> "ShardSetWriter":
        if self._lock is not None or self.result is not None:
            raise ConversionError(f"{self.out}: this ShardSetWriter was already used; make a "
                                  "new one for each shard set")
        lock = OutputLock(self.out, self.run_id)
        with commit.output_errors(self.out):
            lock.acquire()
            try:
                commit.prepare_output(self.out, self.overwrite,
                                      overwrite_hint="pass overwrite=True to replace it")
                fs.makedirs(self.staging)
            except BaseException:
                lock.release()
                raise
        self._lock = lock
        self._staged = StagingWriter(self.staging, task=0, max_bytes=self.max_shard_bytes,
                                     checksums=self.checksums)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        staged, self._staged = self._staged, None
        try:
            if exc_type is None and self._failed is None:
                with commit.output_errors(self.out):
                    self._commit(staged)
            else:
                self._abort(staged)
        finally:
            self._lock.release()
        if exc_type is None and self._failed is not None:
            raise ConversionError(f"{self.out}: a write failed ({self._failed}); nothing "
                                  f"committed, {self.out} holds what it held before")
        return False

    def _commit(self, staged: StagingWriter) -> None:
        try:
            self._counts.shards = staged.close()
            ensure_owner(self.out, self.run_id)  # a writer that lost its lock never commits
            if self._counts.written == 0:
                raise ConversionError(
                    f"{self.out}: no record written ({len(self._counts.rejects)} rejected); "
                    "a shard set needs one at least; no manifest written")
            self.result = commit.commit_output(
                self.out, self.staging, [self._counts], num_inputs=self._inputs,
                max_reject_fraction=self.max_reject_fraction,
                manifest_fields=self.manifest_fields, overwrite=self.overwrite,
                limit_name="max_reject_fraction")
        except BaseException:
            self._abort(staged)
            raise

    def _abort(self, staged: Optional[StagingWriter]) -> None:
        if staged is not None:
            staged.discard()
        commit.abort(self.out, self.staging)

    # -- records ------------------------------------------------------------------------
    def write_image(self, encoded: bytes, *, label: Label, filename: str, split: str = "train",
                    height: Optional[int] = None, width: Optional[int] = None) -> None:
        """Writes one image: ``encoded`` is its JPEG file's bytes (or, for ``encoding="raw"``,
        its ``uint8`` pixels, ``size * size * 3`` bytes). ``label``: a class id or name;
        ``filename``: the record's ``image/filename`` (named in errors too). ``height`` /
        ``width``, when given, are checked against the image."""
        self._check_open()
        if not isinstance(filename, str) or not filename:
            raise ConfigError(f"{self._where(None)}: ", FieldName("filename"), " must be a "
                              f"non-empty string, got {filename!r}")
        where = self._where(filename)
        if not isinstance(encoded, (bytes, bytearray, memoryview)):
            raise ConfigError(f"{where}: the image must be bytes, got {type(encoded).__name__}")
        label = self._label(label, where)
        h, w, channels = self._shape(encoded, where)
        for name, given, got in (("height", height, h), ("width", width, w)):
            if given is not None and given != got:
                raise RecordMismatchError(f"{where}: {name} is given as {given!r}, the image "
                                          f"has {got}")
        record = encode_image_example(
            encoded=bytes(encoded), image_format=self.encoding, height=h, width=w,
            channels=channels, label=label, class_text=self.class_names[label],
            filename=filename)
        self._add(record, split, label, h, w)

    def write(self, record, *, split: str = "train") -> None:
        """Writes one prebuilt record: a serialized ``tf.train.Example`` with the standard
        image keys (:func:`~ray_ingest.format.example.encode_image_example` makes one), or an
        ``Example`` message. It is checked as ``inspect --verify`` checks a record
        (:func:`~ray_ingest.format.check.check_record`, against the manifest this writer
        writes); an error names it ``OUT: record N``, N counting this writer's inputs."""
        self._check_open()
        if hasattr(record, "SerializeToString"):
            record = record.SerializeToString()
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise ConfigError(f"{self._where(None)}: a record must be bytes or an Example, got "
                              f"{type(record).__name__}")
        record = bytes(record)
        # The check every read and verify makes of a record, the thorough one.
        r = check_record(memoryview(record), self._spec, self.out, self._inputs + 1,
                         thorough=True)
        self._add(record, split, r.label, r.height, r.width)

    def reject(self, filename: str, reason: str, message: str = "") -> None:
        """Counts one input as rejected (not written): it goes to ``rejects.jsonl`` with its
        reason (a short word, counted per reason in the manifest) and message."""
        self._check_open()
        if not isinstance(reason, str) or not reason:
            raise ConfigError(FieldName("reason"), f" must be a non-empty string, got {reason!r}")
        self._inputs += 1
        self._counts.add_reject(str(filename), reason, str(message))

    # -- checks -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._failed is not None:
            raise ConversionError(f"{self.out}: a write failed ({self._failed}); this "
                                  "ShardSetWriter commits nothing and takes no more records")
        if self._staged is None:
            raise ConversionError(f"{self.out}: ShardSetWriter writes inside its with block "
                                  "only (with ShardSetWriter(...) as writer: ...)")

    def _where(self, filename: Optional[str]) -> str:
        name = f" ({filename})" if filename else ""
        return f"{self.out}: input {self._inputs + 1}{name}"

    def _label(self, label: Label, where: str) -> int:
        if isinstance(label, str):
            if label not in self._ids:
                raise RecordMismatchError(f"{where}: label {label!r} is not one of the "
                                          f"{len(self.class_names)} class names")
            return self._ids[label]
        if hasattr(label, "item") and not isinstance(label, bool):
            label = label.item()  # a numpy integer
        if not _is_int(label) or not 0 <= label < len(self.class_names):
            raise RecordMismatchError(f"{where}: label {label!r} is not a class id in "
                                      f"0..{len(self.class_names) - 1}")
        return label

    def _shape(self, encoded, where: str, height: Optional[int] = None,
               width: Optional[int] = None):
        """``(height, width, channels)`` of an image as this shard set stores it, checked
        against its rules (raw pixels: ``height`` / ``width`` as the record says)."""
        if self.encoding == keys.FORMAT_RAW:
            h = self.size if height is None else height
            w = self.size if width is None else width
            if (h, w) != (self.size, self.size) or len(encoded) != h * w * 3:
                raise RecordMismatchError(
                    f"{where}: {len(encoded)} raw pixel bytes of {h}x{w}; this shard set "
                    f"stores {self.size}x{self.size}x3 = {self.size * self.size * 3} bytes")
            return h, w, 3
        import simplejpeg

        try:
            h, w, colorspace, _ = simplejpeg.decode_jpeg_header(bytes(encoded))
        except ValueError as e:
            raise RecordMismatchError(f"{where}: not a readable JPEG ({e})") from None
        if self.size is not None:
            if (h, w) != (self.size, self.size):
                raise RecordMismatchError(f"{where}: the JPEG is {h}x{w}; this shard set "
                                          f"stores {self.size}x{self.size} images")
            return h, w, 3
        for name, limit, side in (("max_side", self.max_side, max(h, w)),
                                  ("short_side", self.short_side, min(h, w))):
            if limit is not None and side > limit:
                raise RecordMismatchError(f"{where}: the JPEG is {h}x{w}, over {name} {limit}")
        return h, w, 1 if colorspace == "Gray" else 3

    def _add(self, record: bytes, split: str, label: int, height: int, width: int) -> None:
        self._check_open()
        if split not in keys.SPLITS:
            raise ConfigError(FieldName("split"), f" must be one of {keys.SPLITS}, got "
                              f"{split!r}")
        try:
            self._staged.write(split, record)
        except BaseException as e:
            # A record may be half written (and hashed): the shard set cannot be committed.
            self._failed = e
            if isinstance(e, OSError):
                raise commit.write_error(self.out, e) from e
            raise
        self._inputs += 1
        self._counts.add_record(split, label, height, width, as_is=True)

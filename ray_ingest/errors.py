"""Every error ray-ingest raises for a user to act on, in one place.

All derive from :class:`RayIngestError`; the CLI prints their message as one line and exits
with status 2, while anything else is a bug and keeps its traceback. Each also derives from the
built-in type it refines (``ValueError``, ``RuntimeError``), so generic handlers still work.

They cross process boundaries (Ray tasks, Ray Train workers): :meth:`RayIngestError.__reduce__`
rebuilds any subclass from its message and fields, whatever its ``__init__`` takes. Ray raises a
task's exception in the caller as ``RayTaskError(<its class>)``, an instance of both classes, so
``except RecordCorruptError`` works around ``ray.get`` and ``Dataset.iter_batches`` and
``e.path`` is still there (that instance's ``str`` is the remote traceback; the original is its
``cause``). Ray Train wraps a worker's exception in a ``WorkerGroupError``; :func:`find_error`
finds ours inside any of these wrappers (the training driver and the CLI use it).

The message is fixed when the error is made: Ray Data appends retry advice to the ``args`` of
an exception that fails a task, which ``str`` ignores.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple


def _rebuild(cls: type, args: Tuple[Any, ...], state: Dict[str, Any]) -> "RayIngestError":
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class RayIngestError(Exception):
    """Base class of the package's errors."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.message = str(args[0]) if args else ""

    def __str__(self) -> str:
        message = self.__dict__.get("message")
        return message if message is not None else super().__str__()

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def find_error(error: Optional[BaseException]) -> Optional[RayIngestError]:
    """The package's error that ``error`` is or carries, else None.

    Looks through Ray's wrappers: a ``RayTaskError`` (its ``cause``), Ray Train's
    ``WorkerGroupError`` (each failed worker's exception in ``worker_failures``, lowest rank
    first) and explicit chaining (``__cause__``)."""
    seen = set()
    todo = [error]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "__dict__", {}).get("cause")
        if isinstance(cause, BaseException):  # a Ray wrapper, even one that is also ours
            todo.insert(0, cause)
            continue
        if isinstance(e, RayIngestError):
            return e
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            todo[0:0] = [failures[rank] for rank in sorted(failures)]
        todo.append(e.__cause__)
    return None


class FieldName(str):
    """A config field's name inside a :class:`ConfigError`'s message: where the CLI shows the
    field's flag (``--max-side``) instead."""


class ConfigError(RayIngestError, ValueError):
    """An argument or option is out of its range, or options contradict each other.

    A config's validation passes the message in parts, each field it names as a
    :class:`FieldName`: ``ConfigError(FieldName("lr"), " must be positive, got 0")`` reads
    ``lr must be positive, got 0``, and :meth:`named` words it with other names for the fields
    (the CLI: their flags)."""

    def __init__(self, *parts: Any):
        self.parts = tuple(parts)
        super().__init__("".join(map(str, parts)))

    def named(self, names: Mapping[str, str]) -> "ConfigError":
        """The same error with each :class:`FieldName` in ``names`` replaced by its name
        there."""
        text = "".join(names.get(p, p) if isinstance(p, FieldName) else str(p)
                       for p in self.parts)
        error = _rebuild(type(self), (text,), dict(self.__dict__))
        error.parts, error.message = (text,), text
        return error


class SourceError(RayIngestError, ValueError):
    """The conversion source cannot be listed (names the file and line where it applies)."""


class ConversionError(RayIngestError, RuntimeError):
    """A conversion did not commit (too many rejects, lost records, a second writer, ...)."""


class ManifestError(RayIngestError, ValueError):
    """A manifest is missing, of another format or version, or disagrees with the shards."""


class RecordMismatchError(ManifestError):
    """A record disagrees with the manifest (shape, encoding, class id)."""


class ExampleDecodeError(RayIngestError, ValueError):
    """A record is not a well-formed ``tf.train.Example``, lacks a feature, or holds an
    undecodable image."""


class RecordCorruptError(RayIngestError, ValueError):
    """A TFRecord file is truncated or fails its CRC; names the file and the byte offset."""

    def __init__(self, path: str, offset: int, reason: str):
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: corrupt TFRecord at byte offset {offset}: {reason}")


class RunExistsError(RayIngestError, ValueError):
    """A training run folder already holds a run (or ``--resume`` names none)."""


class CheckpointError(RayIngestError, ValueError):
    """A checkpoint or saved model is missing, unreadable, of an unknown kind, or does not fit
    the model or the data it is used with."""


class TrainingStalledError(RayIngestError, RuntimeError):
    """A training run was stopped because its progress stopped for ``stall_timeout`` s."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "ExampleDecodeError",
    "ManifestError",
    "RayIngestError",
    "RecordCorruptError",
    "RecordMismatchError",
    "RunExistsError",
    "SourceError",
    "TrainingStalledError",
    "find_error",
]

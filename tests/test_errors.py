"""The package's errors keep their type, fields and message across processes: through pickle,
a Ray task (where Ray Data appends retry advice to a failed task's exception) and Ray Train's
wrapper, and ``find_error`` finds ours inside Ray's wrappers."""

from __future__ import annotations

import pickle

import pytest

import ray_ingest
from ray_ingest import errors

ERROR_CLASSES = [getattr(errors, name) for name in errors.__all__
                 if isinstance(getattr(errors, name), type)]


def _example(cls):
    """An instance of ``cls`` with fields beyond its message."""
    if cls is errors.RecordCorruptError:
        return cls("/data/train-00001-of-00004.tfrecord", 1200, "data CRC mismatch")
    e = cls(f"/data/x: something about {cls.__name__}")
    e.path = "/data/x"  # an extra field set after construction travels too
    return e


def _same(a, b):
    assert type(a) is type(b)
    assert str(a) == str(b) and a.args == b.args
    assert vars(a) == vars(b)


def test_the_public_errors_are_exported_at_the_top_level():
    assert errors.RayIngestError in ERROR_CLASSES and len(ERROR_CLASSES) >= 10
    for cls in ERROR_CLASSES:
        assert getattr(ray_ingest, cls.__name__) is cls
        assert issubclass(cls, errors.RayIngestError)
    assert ray_ingest.find_error is errors.find_error


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_survives_pickle_with_its_type_and_fields(cls):
    e = _example(cls)
    _same(e, pickle.loads(pickle.dumps(e)))
    if cls is errors.RecordCorruptError:
        back = pickle.loads(pickle.dumps(e))
        assert (back.path, back.offset, back.reason) == (e.path, 1200, "data CRC mismatch")


def test_the_message_is_fixed_when_the_error_is_made():
    """Ray Data appends retry advice to a failed task's exception ``args``; the message a user
    sees (and the CLI's last line) stays the one we wrote."""
    e = _example(errors.RecordCorruptError)
    e.args = (e.args[0] + "\nFailed to apply UDF transform after 1/1 attempts.",)
    assert str(e) == ("/data/train-00001-of-00004.tfrecord: corrupt TFRecord at byte offset "
                      "1200: data CRC mismatch")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_crosses_a_ray_task_catchable_by_its_class(ray_session, cls):
    ray = ray_session
    sent = _example(cls)

    @ray.remote(max_retries=0)
    def fail(error):
        raise error

    with pytest.raises(cls) as info:
        ray.get(fail.remote(sent))
    got = info.value
    # Ray raises RayTaskError(<cls>), an instance of both; our fields are reachable on it,
    # and find_error gives back the error itself (its str is ours, not the remote traceback).
    assert isinstance(got, ray.exceptions.RayTaskError)
    assert got.path == sent.path
    _same(errors.find_error(got), sent)


def test_find_error_looks_inside_ray_trains_wrapper_and_chains():
    from ray.train import WorkerGroupError

    ours = _example(errors.RecordCorruptError)
    wrapped = WorkerGroupError("rank 1 failed", {1: ours, 0: RuntimeError("unrelated")})
    assert errors.find_error(wrapped) is ours
    try:
        try:
            raise ours
        except errors.RayIngestError as e:
            raise RuntimeError("outer") from e
    except RuntimeError as outer:
        assert errors.find_error(outer) is ours
    assert errors.find_error(RuntimeError("a bug")) is None
    assert errors.find_error(None) is None

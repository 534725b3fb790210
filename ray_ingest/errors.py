"""Errors that the CLI reports as one clear line (exit status 2) instead of a traceback."""

from ray_ingest.codec.example import ExampleDecodeError
from ray_ingest.codec.framing import RecordCorruptError
from ray_ingest.manifest import ManifestError
from ray_ingest.sink import ConversionError
from ray_ingest.sources import SourceError
from ray_ingest.train.driver import RunExistsError, TrainingStalledError

USER_ERRORS = (
    ConversionError,
    ExampleDecodeError,
    ManifestError,
    RecordCorruptError,
    SourceError,
    TrainingStalledError,
    RunExistsError,
    ValueError,
    FileNotFoundError,
)

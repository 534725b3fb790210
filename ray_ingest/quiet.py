"""How much ray-ingest lets Ray and TensorFlow print.

Quiet (the default wherever ray-ingest starts or joins Ray itself: ``ray-ingest <verb>``,
``jobs/*.py``, the library's embedded instance): the project's own lines, every warning and
error that a user acts on, and one progress display per long stage. Off are Ray's INFO logs,
Ray Data's execution logs and progress output, Ray Train's INFO logs (its per-report dumps),
TensorFlow's INFO logs and the C++ banners its libraries print when they load. Verbose
(``-v``, :func:`configure` ``(verbose=True)``): everything as the libraries print it.

The quiet settings reach every process of the job, on any cluster: the driver applies them to
itself (:func:`quiet_this_process`), and :func:`runtime_env` hands Ray a job runtime
environment of environment variables and a worker setup hook (:func:`setup_worker`) that
applies them in each worker process as it starts. Each switch is the library's own:

* TensorFlow: ``TF_CPP_MIN_LOG_LEVEL`` for its C++ INFO logs; the Python ``tensorflow`` logger
  at WARNING. The banners printed while its shared libraries load (absl's preamble and INFO
  lines such as "oneDNN custom operations are on") come before any setting is read, so the
  first ``import tensorflow`` of a process runs with file descriptor 2 diverted; what it printed
  comes back afterwards, less those INFO lines (warnings and errors are kept).
* Ray Data: progress output off (our own display stands for it) and the ``ray.data`` console
  handler at WARNING; Ray Data's log file in the session folder still gets everything.
* Ray Train: ``RunConfig(logging_config=LoggingConfig(log_level=train_log_level()))``.
* Ray core: ``ray.init(logging_level=...)``; Ray's deprecation warnings about its own calls;
  and the worker output that Ray prints on the driver leaves out two notes: one that Ray's core
  writes about Ray Train's own actors at every run, and the raylet's advice when more worker
  processes start at once than the node has CPUs (:func:`filter_worker_logs`).

A worker also learns its cluster's address (``RAY_ADDRESS``) so that the State API, which Ray
Train asks about its controller, finds this cluster's dashboard even when several Ray
instances run on one machine.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, Optional

#: Environment of every process of a quiet job; a value the user set wins.
QUIET_ENV = {
    # TensorFlow's C++ logs: INFO off, warnings and errors kept.
    "TF_CPP_MIN_LOG_LEVEL": "1",
    # Ray Data's progress output in worker processes (the driver shows one display per stage).
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}
WORKER_SETUP_HOOK = "ray_ingest.quiet.setup_worker"

#: Messages of Ray's loggers that are advice on Ray's own settings, not news about the job:
#: hidden from the console in quiet mode (still in Ray's log files).
_RAY_ADVICE = (
    "Progress bars disabled",
    "Progress bars for operators disabled",
    # A look at Ray's resource view as a dataset starts, which lags behind: right after one
    # stage ends (its tasks still shown as holding the CPUs), the next one gets this warning.
    "Warning: The Ray cluster currently does not have any available CPUs",
)

#: Ray loggers named after their file rather than their module, which Ray Train's log level
#: (a filter on ``ray.train.*``) does not reach: "Reporting training result ... TrainingReport".
_RAY_FILE_LOGGERS = ("train/v2/_internal/execution/context.py",)

#: Ray's loggers that log an exception (often with its traceback) and then raise it on, to
#: the caller that gets it in the end (the driver's ``trainer.fit()`` or its Ray Data
#: iterator): Ray Train's worker logging its training function's error, Ray Data's executor,
#: split coordinator and driver-side iterator. Quiet leaves out their records about an error
#: of ours (:class:`_ReportedErrorFilter`): the command prints that error as its last line.
_RAY_REPORTING_LOGGERS = (
    "ray.train.v2._internal.util",
    "ray.data._internal.execution.streaming_executor_state",
    "ray.data._internal.iterator.stream_split_iterator",
    "ray.data.exceptions",
)

#: Ray's loggers of advice on an overloaded machine, each with a traceback: hidden from the
#: console in quiet mode (still in Ray Train's log files). The controller's request for the
#: run's resources to the autoscaler timing out ("safe to ignore").
_RAY_ADVICE_LOGGERS = (
    "ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client",
)

#: Lines of Ray's worker processes that are notes on Ray's own internals, not on the job:
#: hidden from the driver's console in quiet mode (still in the workers' log files).
_RAY_INTERNAL_LINES = re.compile(
    # About Ray Train's preemption-watcher actor, at the start of every training run.
    r"core_worker\.cc:\d+: Actor with class name: '\w+' and ID: '\w+' has constructor "
    r"arguments in the object store and max_restarts > 0"
    # The raylet's advice when more worker processes start at once than the node has CPUs:
    # the reader and the training rows start them on purpose (zero-CPU actors, a kept pool).
    r"|PYTHON worker processes have been started on node: \w+ with address"
)

#: The lines native libraries print to stderr while they load: absl's preamble and its
#: INFO-severity lines ("I0000 00:00:1700000000.123456   1234 port.cc:153] ...").
_LOAD_BANNER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR|I\d{4} [\d:.]+\s+\d+ \S+:\d+\] )"
)

_verbose: Optional[bool] = None  # None: not configured (quiet once ray-ingest starts Ray)


def configure(verbose: bool) -> None:
    """Chooses the output level of this process: quiet (default) or ``verbose``.

    Quiet applies to this process at once and to the Ray workers of the job that
    :func:`ray_ingest.runtime.ensure_ray` starts or joins afterwards."""
    global _verbose
    _verbose = bool(verbose)
    if not _verbose:
        quiet_this_process()


def is_verbose() -> bool:
    return bool(_verbose)


def train_log_level() -> str:
    """The level of Ray Train's own logs (``ray.train.LoggingConfig``)."""
    return "INFO" if is_verbose() else "WARNING"


def ray_log_level() -> int:
    """The level of Ray core's logs in the driver (``ray.init(logging_level=...)``)."""
    return logging.INFO if is_verbose() else logging.WARNING


def runtime_env() -> Dict[str, Any]:
    """The job runtime environment that makes every worker process of the job quiet ({} when
    verbose). Fields that the job submission already set are left to it: Ray refuses to merge
    a driver's runtime environment that repeats the submission's keys."""
    if is_verbose():
        return {}
    submitted = _submitted_runtime_env()
    # This process's value where it has one (the user's, or the default set here).
    env_vars = {k: os.environ.get(k, v) for k, v in QUIET_ENV.items()
                if k not in submitted.get("env_vars", {})}
    env: Dict[str, Any] = {"env_vars": env_vars} if env_vars else {}
    if "worker_process_setup_hook" not in submitted:
        env["worker_process_setup_hook"] = WORKER_SETUP_HOOK
    return env


def _submitted_runtime_env() -> Dict[str, Any]:
    """The runtime environment of the ``ray job submit`` that started this driver, if any."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    text = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not text:
        return {}
    try:
        return dict(json.loads(text).get("runtime_env") or {})
    except (ValueError, AttributeError):
        return {}


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook`` of a quiet job: runs in each worker as it starts."""
    quiet_this_process()
    import ray

    # The State API (which Ray Train's placement-group cleaner asks whether its controller is
    # alive) finds the cluster by RAY_ADDRESS; without it, by guessing among the Ray
    # instances running on the node, which fails when there are several.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def filter_worker_logs() -> None:
    """Leaves the lines of :data:`_RAY_INTERNAL_LINES` out of the worker output that Ray
    prints on this driver (``log_to_driver``). Ray has no setting for it: this wraps the
    printer that ``ray.init`` registers, and does nothing where that is not found."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    lock = getattr(dispatcher, "_lock", None)
    if lock is None or not isinstance(getattr(dispatcher, "handlers", None), list):
        return
    with lock:
        handlers = list(dispatcher.handlers)
        for i, (name, handler) in enumerate(handlers):
            if name == "ray_print_logs" and not isinstance(handler, _LineFilter):
                handlers[i] = (name, _LineFilter(handler))
        dispatcher.handlers = handlers
    # The raylet's notes reach the driver through the error listener, which prints them with
    # ray._private.worker.print_to_stdstream directly.
    try:
        import ray._private.worker as ray_worker
    except ImportError:
        return
    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is not None and not isinstance(printer, _LineFilter):
        ray_worker.print_to_stdstream = _LineFilter(printer)


class _LineFilter:
    def __init__(self, handler: Callable[[Dict[str, Any]], None]):
        self.handler = handler

    def __call__(self, data: Dict[str, Any], *args, **kwargs) -> None:
        lines = [line for line in data.get("lines", ()) if not _RAY_INTERNAL_LINES.search(line)]
        if lines:
            self.handler({**data, "lines": lines}, *args, **kwargs)


_PROCESS_QUIET = False


def quiet_this_process() -> None:
    """Applies the quiet settings to this process (once)."""
    global _PROCESS_QUIET
    if _PROCESS_QUIET:
        return
    _PROCESS_QUIET = True
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    tf_logger = logging.getLogger("tensorflow")
    if tf_logger.level == logging.NOTSET:
        tf_logger.setLevel(logging.WARNING)
    # "Token authentication is enabled for this Ray cluster": a notice at every start.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    for name in _RAY_REPORTING_LOGGERS:
        logging.getLogger(name).addFilter(_ReportedErrorFilter())
    for name in _RAY_ADVICE_LOGGERS:
        # A filter, not a level: Ray Train's logging setup resets the levels of the loggers
        # under ray.train (logging.config.dictConfig), not their filters.
        logging.getLogger(name).addFilter(_BelowErrorFilter())
    watch = _ImportWatch.install()
    watch.after("ray", _quiet_ray_file_loggers)
    watch.around("tensorflow", _drop_load_banners)
    watch.after("ray.data", _quiet_ray_data_console)


def _quiet_ray_file_loggers() -> None:
    import ray

    root = os.path.dirname(ray.__file__)
    for rel in _RAY_FILE_LOGGERS:
        logging.getLogger(os.path.join(root, *rel.split("/"))).setLevel(logging.WARNING)


def _quiet_ray_data_console() -> None:
    """Ray Data logs to the console from INFO up (execution plans, progress lines, "execution
    finished"); quiet keeps its warnings and errors there. Its log file keeps everything."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.WARNING))
            if not any(isinstance(f, _AdviceFilter) for f in handler.filters):
                handler.addFilter(_AdviceFilter())


class _ReportedErrorFilter(logging.Filter):
    """Drops a record about an exception that is (or carries) one of ours: the record's own
    exception, or the one being handled where it was logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ray_ingest.errors import find_error

        error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return error is None or find_error(error) is None


class _BelowErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class _AdviceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RAY_ADVICE)


@contextlib.contextmanager
def _drop_load_banners():
    """Diverts file descriptor 2 to a temporary file while the block runs, then writes back
    what arrived there, less the lines of :data:`_LOAD_BANNER`."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True)
                           if not _LOAD_BANNER.match(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


class _ImportWatch(importlib.abc.MetaPathFinder):
    """Runs code around or after the first import of a module, wherever that import happens
    (our code, Ray's, Keras's). A module imported already gets its ``after`` code at once."""

    _instance: Optional["_ImportWatch"] = None

    def __init__(self):
        self._hooks: Dict[str, tuple] = {}

    @classmethod
    def install(cls) -> "_ImportWatch":
        if cls._instance is None:
            cls._instance = cls()
            sys.meta_path.insert(0, cls._instance)
        return cls._instance

    def around(self, name: str, context: Callable[[], Any]) -> None:
        if name not in sys.modules:
            self._hooks[name] = (context, None)

    def after(self, name: str, fn: Callable[[], None]) -> None:
        if name in sys.modules:
            fn()
        else:
            self._hooks[name] = (None, fn)

    def find_spec(self, name, path=None, target=None):
        hook = self._hooks.pop(name, None)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _WatchedLoader(spec.loader, *hook)
        return spec


class _WatchedLoader(importlib.abc.Loader):
    """A module's own loader, with code around or after its execution; the module keeps its
    own loader as ``__loader__``."""

    def __init__(self, loader, around, after):
        self._loader, self._around, self._after = loader, around, after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with (self._around() if self._around else contextlib.nullcontext()):
            self._loader.exec_module(module)
        if self._after:
            self._after()

    def __getattr__(self, name):
        return getattr(self._loader, name)

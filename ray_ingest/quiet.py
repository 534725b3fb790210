"""How much ray-ingest lets Ray and TensorFlow print.

Quiet (the default wherever ray-ingest starts or joins Ray itself: ``ray-ingest <verb>``,
``jobs/*.py``, the library's embedded instance): the project's own lines, the warnings and
errors of Ray core, Ray Train and TensorFlow, Ray Data's errors, and one progress display per
long stage. Off are Ray's, Ray Data's, Ray Train's and TensorFlow's INFO logs, Ray Data's
warnings and its progress output. Verbose (``-v``,
:func:`configure` ``(verbose=True)``): everything as the libraries print it.

Each switch is one the library documents; nothing here reads or rewrites another library's
messages:

* TensorFlow: ``TF_CPP_MIN_LOG_LEVEL=1`` (its C++ INFO logs) and the ``tensorflow`` logger at
  WARNING.
* Ray core: ``ray.init(logging_level=...)`` in the driver; the root logger of each worker
  process at WARNING (the worker setup hook below, and again once Ray Train has set up a
  training worker's logging: :func:`quiet_train_worker`), which holds back the INFO records
  of Ray's loggers there (Ray Train's per-report records among them), while ray-ingest's own
  logger stays at INFO.
* Ray Data: ``DataContext.enable_progress_bars`` and ``print_on_execution_start`` off (our own
  display stands for them), ``RAY_DATA_DISABLE_PROGRESS_BARS`` in the workers, and the console
  handler of the ``ray.data`` logger at ERROR in every process (its log file in the session
  folder still gets everything, its warnings included: advice on the settings ray-ingest
  makes, such as "Progress bars disabled"). A record that handler gets about an error of ours
  (a failed write task whose error the command prints as its last line) is left out there:
  the error is said once.
* Ray Train: ``RunConfig(logging_config=LoggingConfig(log_level=train_log_level()))``; its
  console in a training worker leaves out its record of our own error (as Ray Data's does).
* Python: the ``DeprecationWarning``\\ s that Ray's modules raise about Ray's own calls.

The driver applies them to itself (:func:`quiet_this_process`); :func:`runtime_env` gives the
job's worker processes the environment variables and a ``worker_process_setup_hook``
(:func:`setup_worker`) that applies them as each worker starts. The hook also tells a worker
its cluster's address (``RAY_ADDRESS``), so that the State API, which Ray Train asks about its
controller, finds this cluster even where several Ray instances run on one machine.

What stays, the price of using no library's internals (listed in the README): TensorFlow's
load-time lines (absl's "All log messages before absl::InitializeLog()" and oneDNN's note),
Ray's token-authentication notice at start, and Ray core's notes on its own actors and
worker pool.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Dict, Optional

#: Environment of every process of a quiet job; a value already set (by the user, or by the
#: job submission's runtime environment) wins.
QUIET_ENV = {
    # TensorFlow's C++ logs: INFO off, warnings and errors kept.
    "TF_CPP_MIN_LOG_LEVEL": "1",
    # Ray Data's progress output in worker processes (the driver shows one display per stage).
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}
WORKER_SETUP_HOOK = "ray_ingest.quiet.setup_worker"

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
    verbose). An environment variable already set in this process is left out: the user's
    value (or the job submission's, which Ray already set here) reaches the workers as it is,
    and Ray refuses a driver's runtime environment that repeats a submission's keys."""
    if is_verbose():
        return {}
    env: Dict[str, Any] = {"worker_process_setup_hook": WORKER_SETUP_HOOK}
    env_vars = {k: v for k, v in QUIET_ENV.items()
                if k not in os.environ or k in _SET_HERE}
    if env_vars:
        env["env_vars"] = env_vars
    return env


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook`` of a quiet job: runs in each worker as it starts."""
    quiet_this_process()
    _quiet_root()
    import ray
    import ray.data  # sets up the ray.data logger, which Ray Train's workers import anyway

    quiet_ray_data_console()

    # The State API (which Ray Train's placement-group cleaner asks whether its controller is
    # alive) finds the cluster by RAY_ADDRESS; without it, by guessing among the Ray
    # instances running on the node, which fails when there are several.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def quiet_train_worker() -> None:
    """Called by the training loop in each Ray Train worker: Ray Train sets up the worker's
    logging as the loop starts, the root logger at INFO again; in a quiet job this puts it
    back at WARNING (Ray Train's records of each report stay out of the output), and Ray
    Train's console leaves out its record of a training function that failed with one of our
    errors (the command prints that error as its last line)."""
    if _PROCESS_QUIET:
        _quiet_root()
        _leave_out_our_errors("ray.train", logging.NOTSET)


def _quiet_root() -> None:
    # Ray's loggers in a worker log INFO to the worker's output, which Ray prints on the
    # driver: the root level holds them back; ray-ingest's own lines keep INFO.
    logging.getLogger().setLevel(logging.WARNING)
    ours = logging.getLogger("ray_ingest")
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)


_PROCESS_QUIET = False
#: The QUIET_ENV variables that quieting this process set (not the user's own).
_SET_HERE: set = set()


def quiet_this_process() -> None:
    """Applies the quiet settings to this process (once)."""
    global _PROCESS_QUIET
    if _PROCESS_QUIET:
        return
    _PROCESS_QUIET = True
    for k, v in QUIET_ENV.items():
        if k not in os.environ:
            os.environ[k] = v
            _SET_HERE.add(k)
    tf_logger = logging.getLogger("tensorflow")
    if tf_logger.level == logging.NOTSET:
        tf_logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")


def quiet_ray_data_console() -> None:
    """Ray Data logs to the console from INFO up (execution plans, progress lines, "execution
    finished") and warns about the settings ray-ingest makes (progress bars off, in each
    process that runs a dataset): quiet keeps its errors there, less its records of our own
    errors (said once, by the command). Its log file keeps everything. Call after
    ``import ray.data``, which sets up that logger."""
    _leave_out_our_errors("ray.data", logging.ERROR)


def quiet_ray_data_task() -> None:
    """Called by our Ray Data task functions as they start: Ray Data sets up its logger
    again in a worker whenever a task brings another dataset's context, console handler at
    INFO; in a quiet job this puts that handler back (a few handlers looked at: cheap)."""
    if _PROCESS_QUIET and not is_verbose():
        quiet_ray_data_console()


def _leave_out_our_errors(name: str, level: int) -> None:
    """The console handlers of the logger ``name``: at ``level`` at least, and without the
    records about an error of ours."""
    for handler in logging.getLogger(name).handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.setLevel(max(handler.level, level))
            if not any(isinstance(f, OurErrorFilter) for f in handler.filters):
                handler.addFilter(OurErrorFilter())


class OurErrorFilter(logging.Filter):
    """Drops a record about an exception that is (or carries) one of ours: the record's own
    exception, or the one being handled where it was logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ray_ingest.errors import find_error

        error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return error is None or find_error(error) is None

"""What the command line prints around a verb: our log lines, and Ray shut down before an
error or an interruption is said (so that no line of Ray's logs comes after ours)."""

from __future__ import annotations

import logging
import sys


class ConsoleFormatter(logging.Formatter):
    """Our lines read like the rest of our output (``warning: ...``); other libraries' lines
    keep their level and logger name, and with ``-v`` every line gets its time."""

    def __init__(self, verbose: bool = False):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose
                         else "%(levelname)s %(name)s: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not record.name.startswith("ray_ingest"):
            return super().format(record)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def configure_logging(verbose: bool) -> None:
    """Quiet: other libraries' warnings and errors, and ray-ingest's own lines from INFO up;
    ``verbose``: everything, each line with its time."""
    from ray_ingest import quiet

    quiet.configure(verbose=verbose)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ConsoleFormatter(verbose))
    logging.getLogger("ray_ingest").setLevel(logging.DEBUG if verbose else logging.INFO)


def ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def shut_down_ray() -> None:
    """Shuts down the Ray this process started or connected to, if any."""
    if ray_is_up():
        sys.modules["ray"].shutdown()

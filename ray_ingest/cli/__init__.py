"""``ray-ingest <verb>``: the command line.

Each verb parses its arguments into the library's config, whose options are generated from the
config dataclass's fields (:mod:`~ray_ingest.cli.generate`), and calls the library function
that ``jobs/<job>.py`` and the benchmarks call too; :mod:`~ray_ingest.cli.data` holds the
verbs that make datasets, :mod:`~ray_ingest.cli.training` those that read them. A
:class:`~ray_ingest.errors.RayIngestError` (also one raised in a Ray task or a Ray Train
worker) is the user's to fix: its message as the last line and exit status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ray_ingest.cli import data, training
from ray_ingest.cli.console import ConsoleFormatter, configure_logging, ray_is_up
from ray_ingest.cli.generate import config_from_args, verb_parser, verbose_parent

#: The verbs, in the order ``ray-ingest --help`` lists them.
VERB_ORDER = ("synth", "convert", "inspect", "bench", "adopt", "train", "evaluate", "demo")

__all__ = ["ConsoleFormatter", "build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    from ray_ingest import __version__

    parser = argparse.ArgumentParser(
        prog="ray-ingest",
        description="Ray-based ingestion and training for image models.",
        parents=[verbose_parent()],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs = {**data.VERBS, **training.VERBS}
    for name in VERB_ORDER:
        help, add_arguments, run = verbs[name]
        add_arguments(verb_parser(sub, name, help, run))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    from ray_ingest.errors import find_error

    ray_was_up = ray_is_up()
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 - only ours (or a Ray wrapper of ours) is handled
        error = find_error(e)
        if error is None:
            raise
        if not ray_was_up and ray_is_up():
            sys.modules["ray"].shutdown()  # so that no line of Ray's logs comes after ours
        print(f"ray-ingest {args.verb}: error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: what was committed stays (train: its pointers)
        if not ray_was_up and ray_is_up():
            sys.modules["ray"].shutdown()
        said = f"; {e}" if str(e) else ""
        print(f"ray-ingest {args.verb}: interrupted{said}", file=sys.stderr, flush=True)
        return 130

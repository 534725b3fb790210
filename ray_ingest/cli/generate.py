"""A verb's options generated from its config dataclass, and the config from the parsed options.

Each field declared with :func:`~ray_ingest.flags.opt` becomes one argument (its flag, type,
default, help and choices from the field: see :mod:`ray_ingest.flags`), parsed into the field's
own name; :func:`config_from_args` builds the config from them, and a
:class:`~ray_ingest.errors.ConfigError` it raises names each field by its flag (``--max-side``,
not ``max_side``).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ray_ingest.flags import MISSING, Option, flag_names, options


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show: switches, and options
    whose help says what their absence means."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def verbose_parent() -> argparse.ArgumentParser:
    """``-v`` before or after the verb (``jobs/*.py`` pass their arguments after it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show Ray's, Ray Data's, Ray Train's and TensorFlow's own logs and "
                        "start-up banners (default: only ray-ingest's lines, warnings and "
                        "errors, and a progress display per stage)")
    return p


def verb_parser(sub, name: str, help: str, run: Callable[[argparse.Namespace], int]
                ) -> argparse.ArgumentParser:
    """The parser of verb ``name``, whose ``run(args)`` does it."""
    p = sub.add_parser(name, help=help, description=help, parents=[verbose_parent()],
                       formatter_class=DefaultsFormatter)
    p.set_defaults(func=run)
    return p


def _argument(o: Option) -> dict:
    """``add_argument``'s keywords for option ``o``."""
    kw: dict = {"help": o.spec.help}
    if o.positional:
        return kw
    kw["dest"] = o.field
    if o.is_switch:
        if o.optional:
            kw.update(action=argparse.BooleanOptionalAction, default=o.default)
        else:
            kw.update(action="store_false" if o.default else "store_true")
        return kw
    kw.update(type=o.type if o.sequence is None else o.parse,
              default=None if o.default is MISSING else o.default)
    if o.default is MISSING:
        kw["required"] = True
    if o.spec.choices is not None:
        kw["choices"] = o.spec.choices
    if o.spec.metavar is not None:
        kw["metavar"] = o.spec.metavar
    return kw


def add_config_arguments(p: argparse.ArgumentParser, cls: type) -> None:
    """The arguments of every option of the config dataclass ``cls``, in field order."""
    for o in options(cls):
        p.add_argument(o.flag, **_argument(o))


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """The config ``cls`` from the parsed arguments of its options (and ``overrides``). A value
    the config refuses is reported under its flag."""
    from ray_ingest.errors import ConfigError

    given = vars(args)
    values = {o.field: given[o.field] for o in options(cls) if o.field in given}
    values.update(overrides)
    try:
        return cls(**values)
    except ConfigError as e:
        raise e.named(flag_names(cls)) from None

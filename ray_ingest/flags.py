"""Config fields that are also command-line options, declared once, on the field.

A config dataclass (``ConvertOptions``, ``TrainConfig``, ...) declares each field that the
command line sets with :func:`opt`: its help, and choices, a metavar or another flag name where
the field does not say enough. Everything else comes from the field:

* the flag: ``--`` and the field's name with ``-`` for ``_`` (``max_side``: ``--max-side``);
* the type, from the annotation: ``int``, ``float``, ``str``; ``Optional[X]`` is X, its absence
  None; ``List[str]`` / ``Tuple[str, ...]``: comma-separated words; ``bool``: a switch,
  ``--x`` where the default is False, ``--no-x`` where it is True, both for
  ``Optional[bool]``;
* the default, the field's (or the ``default=`` of :func:`opt` where the command line's
  differs).

The CLI builds each verb's options from :func:`options` (``ray_ingest.cli.generate``) and
:func:`option_words` writes a config back as those options, so that what one prints the other
parses. A field the command line deliberately leaves alone is declared with :func:`no_flag`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: The key of a field's metadata that holds its :class:`Flag` (None: no flag, on purpose).
METADATA_KEY = "ray_ingest.flag"
MISSING = dataclasses.MISSING


class _Same:
    """A :class:`Flag`'s default when the command line's default is the field's."""

    def __repr__(self) -> str:
        return "SAME"


SAME = _Same()


@dataclasses.dataclass(frozen=True)
class Flag:
    """What a field's option says beyond the field itself."""

    help: str
    choices: Optional[Sequence[Any]] = None
    metavar: Optional[str] = None
    #: The option's name, where it is not ``--field-name``.
    name: Optional[str] = None
    #: A positional argument (a path that every call names) instead of an option.
    positional: bool = False
    #: The command line's default, where the config has none or another.
    default: Any = SAME


def opt(default: Any = MISSING, *, help: str, choices: Optional[Sequence[Any]] = None,
        metavar: Optional[str] = None, flag: Optional[str] = None, positional: bool = False,
        cli_default: Any = SAME) -> Any:
    """A dataclass field (``default``, none when left out) that is an option of the command
    line, described by ``help``; ``cli_default``: the option's default where it differs from
    the field's."""
    return dataclasses.field(default=default, metadata={METADATA_KEY: Flag(
        help=help, choices=tuple(choices) if choices is not None else None, metavar=metavar,
        name=flag, positional=positional, default=cli_default)})


def no_flag(default: Any = MISSING) -> Any:
    """A dataclass field that the command line does not set as an option of its own (the
    field's comment says who sets it)."""
    return dataclasses.field(default=default, metadata={METADATA_KEY: None})


def has_no_flag(field: dataclasses.Field) -> bool:
    """Whether ``field`` was declared with :func:`no_flag`."""
    return METADATA_KEY in field.metadata and field.metadata[METADATA_KEY] is None


@dataclasses.dataclass(frozen=True)
class Option:
    """One field's option, resolved from the field and its :class:`Flag`."""

    #: The field's name, also the parsed argument's ``dest``.
    field: str
    #: ``--max-side``, ``--no-augment``; a positional's field name.
    flag: str
    #: int, float, str or bool: the type of the value (of each word of a sequence).
    type: type
    optional: bool
    #: list or tuple for a comma-separated option, else None.
    sequence: Optional[type]
    #: The command line's default (MISSING: the option must be given).
    default: Any
    spec: Flag

    @property
    def positional(self) -> bool:
        return self.spec.positional

    @property
    def is_switch(self) -> bool:
        return self.type is bool and self.sequence is None

    def parse(self, text: str) -> Any:
        """The value of one command-line word."""
        if self.sequence is None:
            return self.type(text)
        return self.sequence(self.type(w.strip()) for w in text.split(",") if w.strip())

    def words(self, value: Any) -> List[str]:
        """``value`` as command-line words (none for None, which is the option's absence)."""
        if value is None:
            return []
        if self.positional:
            return [str(value)]
        if self.is_switch:
            if self.optional:  # --x / --no-x
                return [self.flag if value else "--no-" + self.flag[2:]]
            return [self.flag] if value != self.default else []
        if self.sequence is not None:
            return [self.flag, ",".join(str(v) for v in value)]
        return [self.flag, str(value)]


def _unwrap(annotation: Any) -> Tuple[type, bool, Optional[type]]:
    """``(type, optional, sequence)`` of a field's annotation."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"no option for a field of type {annotation}")
        annotation = args[0]
    sequence = None
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        sequence = origin
        annotation = typing.get_args(annotation)[0]
    if annotation not in (int, float, str, bool):
        raise TypeError(f"no option for a field of type {annotation}")
    return annotation, optional, sequence


@functools.lru_cache(maxsize=None)
def options(cls: type) -> Tuple[Option, ...]:
    """The options of the config dataclass ``cls``: one for each field declared with
    :func:`opt`, in the order of the fields."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(METADATA_KEY)
        if spec is None:
            continue
        kind, optional, sequence = _unwrap(hints[f.name])
        default = f.default if spec.default is SAME else spec.default
        if spec.positional:
            flag = f.name
        elif spec.name:
            flag = spec.name
        elif kind is bool and sequence is None and default is True and not optional:
            flag = "--no-" + f.name.replace("_", "-")
        else:
            flag = "--" + f.name.replace("_", "-")
        out.append(Option(f.name, flag, kind, optional, sequence, default, spec))
    return tuple(out)


def flag_names(cls: type) -> Dict[str, str]:
    """Field name → its option's flag, for the options of ``cls``."""
    return {o.field: o.flag for o in options(cls) if not o.positional}


def option_words(config: Any, always: Sequence[str] = ()) -> List[str]:
    """The command-line words of ``config``: its positionals, then the option of each field
    whose value differs from the option's default (and of the fields named in ``always``)."""
    opts = options(type(config))
    words = [w for o in opts if o.positional for w in o.words(getattr(config, o.field))]
    for o in opts:
        value = getattr(config, o.field)
        if o.positional or (value == o.default and o.field not in always):
            continue
        words += o.words(value)
    return words

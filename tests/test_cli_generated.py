"""The options generated from the config dataclasses: every field of every config a verb builds
is an option (or declared to have none), and a value of each survives the way through the
command line (rendered as options, parsed by the verb's parser, the config rebuilt); a value
the config refuses is named by its flag. No Ray needed."""

from __future__ import annotations

import dataclasses
import pickle
import shlex

import pytest

from ray_ingest.bench import BenchConfig
from ray_ingest.bench.rows import ALL_ROWS
from ray_ingest.cli import build_parser, config_from_args, main
from ray_ingest.cli.data import synth_spec
from ray_ingest.convert import ConvertOptions
from ray_ingest.errors import ConfigError, FieldName, find_error
from ray_ingest.flags import MISSING, SAME, has_no_flag, option_words, options
from ray_ingest.tools.synth import SynthSpec
from ray_ingest.train.config import TrainConfig

#: Verb: (its config, the words before its options, how the verb builds the config).
VERBS = {
    "train": (TrainConfig, [], lambda args: config_from_args(TrainConfig, args)),
    "convert": (ConvertOptions, ["src", "out"],
                lambda args: config_from_args(ConvertOptions, args)),
    "bench": (BenchConfig, [], lambda args: config_from_args(BenchConfig, args)),
    "synth": (SynthSpec, [], synth_spec),
}
#: Changes where the value made from the field's type alone would be refused.
CHANGES = {
    ("train", "image_size"): {"image_size": 48},
    ("train", "crop_ratio"): {"crop_ratio": 1.25},
    # Options of the stream order only.
    ("train", "shuffle_buffer"): {"shuffle_buffer": 48, "order": "stream"},
    ("train", "skip_corrupt"): {"skip_corrupt": True, "order": "stream"},
    ("convert", "encoding"): {"encoding": "raw", "size": 32},  # raw: fixed-size modes
    ("bench", "rows"): {"rows": [ALL_ROWS[-1]]},
    ("synth", "num_classes"): {"num_classes": 3},
}


def _other_value(o):
    """A value of option ``o`` other than its default, made from its type."""
    default = None if o.default is MISSING else o.default
    if o.spec.choices:
        return next(c for c in o.spec.choices if c != default)
    if o.is_switch:
        return True if o.optional else not default
    if o.sequence is not None:
        return o.sequence(["a", "b"])
    if o.type is int:
        return 48 if default is None else default + 1
    if o.type is float:
        return 0.25 if default is None else default / 2
    return "some other value"


def _base(cls):
    """The fields a verb's config gets from the command line when only its positionals are
    given: the options whose default is the command line's own, and the positionals."""
    values = {}
    for o in options(cls):
        if o.positional:
            values[o.field] = f"/data/{o.field} x"
        elif o.spec.default is not SAME:
            values[o.field] = o.spec.default
    return values


def _cases():
    for verb, (cls, _, _) in VERBS.items():
        for f in dataclasses.fields(cls):
            yield pytest.param(verb, f.name, id=f"{verb}-{f.name}")


@pytest.mark.parametrize("verb, name", list(_cases()))
def test_every_field_goes_through_the_command_line(verb, name):
    cls, before, build = VERBS[verb]
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if has_no_flag(field):
        return  # set by other means (a driver, another option), on purpose
    by_name = {o.field: o for o in options(cls)}
    assert name in by_name, f"{cls.__name__}.{name} has no option: declare it with opt()"
    change = CHANGES.get((verb, name), {name: _other_value(by_name[name])})
    config = cls(**{**_base(cls), **change})
    words = (shlex.split(config.command_line())[2:] if verb == "train"
             else option_words(config))
    args = build_parser().parse_args([verb, *before, *words])
    assert build(args) == config, words


def test_the_resume_command_renders_only_what_differs():
    cfg = TrainConfig(data="/d", weight_decay=0.05, use_gpu=False, augment=False)
    assert shlex.split(cfg.command_line()) == [
        "ray-ingest", "train", "/d", "--epochs", "5", "--no-use-gpu", "--storage-path", "runs",
        "--name", "ray-ingest-train", "--weight-decay", "0.05", "--no-augment"]


def test_a_field_without_an_option_is_not_rendered():
    @dataclasses.dataclass
    class Config:
        data: str = dataclasses.field(default="d")

    assert options(Config) == () and option_words(Config()) == []


@pytest.mark.parametrize("argv, said", [
    (["train", "/d", "--batch-size", "3", "--num-workers", "2"],
     "--batch-size (global) 3 must divide evenly across 2 workers"),
    (["train", "/d", "--batch-size", "1", "--num-workers", "2"],
     "--batch-size (global) 1 is smaller than --num-workers 2"),
    (["convert", "s", "o", "--size", "4"], "--size must be an integer from 8 to 8192, got 4"),
    (["convert", "s", "o", "--size", "64", "--max-side", "64"],
     "--max-side applies to --resize-mode 'keep' (whole images), not 'center-crop'; "
     "fixed-size modes take --size"),
    (["synth", "o", "--num-images", "0"], "--num-images must be at least 1, got 0"),
    (["bench", "d", "--warmup", "-1"], "--warmup must be >= 0, got -1"),
])
def test_a_refused_value_names_each_field_by_its_flag(argv, said, capsys, no_ray):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"ray-ingest {argv[0]}: error: {said}\n"


def test_from_python_the_fields_keep_their_names():
    with pytest.raises(ConfigError) as info:
        TrainConfig(data="/d", batch_size=1, num_workers=2)
    assert str(info.value) == "batch_size (global) 1 is smaller than num_workers 2"


def test_a_config_error_keeps_its_fields_through_pickling():
    error = ConfigError(FieldName("max_side"), " must be positive, got 0")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is ConfigError and str(back) == "max_side must be positive, got 0"
    assert str(back.named({"max_side": "--max-side"})) == "--max-side must be positive, got 0"
    named = pickle.loads(pickle.dumps(back.named({"max_side": "--max-side"})))
    assert str(named) == "--max-side must be positive, got 0" and find_error(named) is named


def test_the_api_functions_are_plain_functions(tmp_path):
    import inspect

    import ray_ingest

    assert inspect.isfunction(ray_ingest.convert_folder) and inspect.isfunction(ray_ingest.fit)
    assert list(inspect.signature(ray_ingest.convert_folder).parameters)[:3] == [
        "src", "out", "options"]
    import ray_ingest.convert as package

    assert not callable(package)  # a package is a package, not a function
    with pytest.raises(ConfigError, match="max_side"):  # the options are checked first
        ray_ingest.convert_folder(str(tmp_path), str(tmp_path / "out"), max_side=-1)

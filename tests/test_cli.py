"""The command line itself: --version, a help string and the default for every option,
``convert --dry-run`` (nothing written, no Ray), and the demo's answer to "does the input keep
up?"."""

from __future__ import annotations

import argparse
import re

import pytest

import ray_ingest
from helpers import make_synth_tree
from ray_ingest.cli import build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"ray-ingest {ray_ingest.__version__}"


@pytest.mark.parametrize("verb", sorted(_subparsers(build_parser())))
def test_every_option_has_help_and_shows_its_default(verb, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside a default
    parser = _subparsers(build_parser())[verb]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{verb} {action.option_strings or action.dest}: no help"
        if action.option_strings and action.default not in (None, argparse.SUPPRESS) \
                and not isinstance(action.default, bool):
            assert f"(default: {action.default})" in text, f"{verb} {action.option_strings}"


def test_verbose_is_accepted_after_the_verb():
    # jobs/*.py put their arguments after the verb.
    args = build_parser().parse_args(["convert", "src", "out", "-v"])
    assert args.verbose is True
    assert build_parser().parse_args(["-v", "convert", "src", "out"]).verbose is True
    assert not hasattr(build_parser().parse_args(["convert", "src", "out"]), "verbose")


def test_convert_dry_run_plans_without_writing_or_ray(tmp_path, capsys, no_ray):
    src = make_synth_tree(tmp_path / "src", 12, 4, 48, 40, seed=1)
    (src / "notes.txt").write_text("not an image")
    (src / "circle" / ".DS_Store").write_bytes(b"\0")
    (src / "square" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out), "--dry-run", "--size", "32",
                 "--val-fraction", "0.25"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "4 classes, 13 images" in text
    rows = {line.split()[0]: [int(x) for x in line.split()[1:]]
            for line in text.splitlines() if line.startswith("  ") and line.split()[0]
            in ("circle", "square", "triangle", "star", "total")}
    assert [rows[c][2] for c in ("circle", "square", "star", "triangle", "total")] == [
        3, 4, 3, 3, 13]
    assert all(t + v == n for t, v, n in rows.values())
    assert f"splits: train {rows['total'][0]}, val {rows['total'][1]}" in text
    assert re.search(r"shards: about 1 train \+ 1 val of up to 100 MB", text)
    assert "ignored (not converted; listed in rejects.jsonl): 2" in text
    assert "not-an-image-extension x1: notes.txt" in text
    assert "hidden-file x1: circle/.DS_Store" in text
    # Every input is sampled here; the sample runs the conversion's own decode.
    assert "sampled inputs rejected: empty-file x1 (of 13" in text
    assert "refused without --overwrite" not in text


def test_convert_dry_run_says_an_out_that_is_a_file_would_be_refused(tmp_path, capsys, no_ray):
    src = make_synth_tree(tmp_path / "src", 4, 2, 32, 32, seed=3)
    out = tmp_path / "afile"
    out.write_bytes(b"x")
    assert main(["convert", str(src), str(out), "--dry-run", "--size", "32"]) == 0
    assert f"{out} exists and is not a directory: the conversion would be refused" in \
        capsys.readouterr().out
    assert out.read_bytes() == b"x"


def test_convert_dry_run_of_a_list_names_odd_extensions_and_a_finished_output(
        tmp_path, capsys, no_ray):
    src = make_synth_tree(tmp_path / "src", 8, 2, 32, 32, seed=2)
    names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.jpg"))
    (src / "scan.pdf").write_bytes(b"%PDF-1.4")
    lines = ["path,label"] + [f"{n},{n.split('/')[0]}" for n in names] + ["scan.pdf,circle"]
    (src / "list.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    assert main(["convert", str(src / "list.csv"), str(out), "--dry-run",
                 "--shard-size-mb", "0.01", "--size", "64", "--encoding", "raw"]) == 0
    text = capsys.readouterr().out
    assert "(list)" in text and "2 classes, 9 images" in text
    assert "listed inputs without an image extension (rejected unless they decode): 1: scan.pdf" \
        in text
    # Raw 64x64 records are over 12 KB each: every record gets a 10 KB shard of its own.
    shards = re.search(r"shards: about (\d+) train \+ (\d+) val", text)
    assert int(shards.group(1)) + int(shards.group(2)) == 9
    assert "refused without --overwrite" in text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_demo_says_whether_the_input_keeps_up():
    from ray_ingest.tools.demo import keeps_up_lines

    text = "\n".join(keeps_up_lines(reader=5000, reader_224=1200, consumed=500,
                                    data_wait=0.012, workers=2))
    assert "5,000 images/s" in text and "500 images/s" in text and "1.2%" in text
    assert "keeps up" in text and "10.0x" in text
    slow = "\n".join(keeps_up_lines(reader=400, reader_224=100, consumed=500, data_wait=0.3,
                                    workers=2))
    assert "bottleneck" in slow and "0.80x" in slow
    for words in ("MISSED", "met", "target"):
        assert not re.search(rf"\b{words}\b", text + slow)


def test_console_formatter_our_lines_plain_others_named():
    import logging

    from ray_ingest.cli import ConsoleFormatter

    def rec(name, level, msg):
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    quiet = ConsoleFormatter(verbose=False)
    assert quiet.format(rec("ray_ingest.train", logging.WARNING, "one class")) == \
        "warning: one class"
    assert quiet.format(rec("ray_ingest", logging.INFO, "wrote 3 shards")) == "wrote 3 shards"
    assert quiet.format(rec("ray.data", logging.WARNING, "slow")) == "WARNING ray.data: slow"
    loud = ConsoleFormatter(verbose=True).format(rec("ray_ingest", logging.WARNING, "x"))
    assert loud.endswith("WARNING ray_ingest: x") and loud[:4].isdigit()


def test_a_refused_value_is_named_by_its_flag(capsys):
    from ray_ingest.cli import main

    assert main(["convert", "missing-src", "out", "--val-fraction", "1.5"]) == 2
    assert main(["convert", "missing-src", "out", "--resize-mode", "keep",
                 "--max-side", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == "ray-ingest convert: error: --val-fraction must be in [0, 1), got 1.5"
    assert err[-1].startswith("ray-ingest convert: error: --max-side must be")

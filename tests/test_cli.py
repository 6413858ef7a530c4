"""Bad inputs through the command line: exit code 2 and a clear message on stderr, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import WNIDS, image_stack, write_arrays, write_images
from tta_bench import engine
from tta_bench.cli import main
from tta_bench.config import RunConfig
from tta_bench.vocabulary import PREDICTIONS, SUMMARY

FAST = ["--teacher", "tiny", "--workers", "0", "--device", "cpu", "--no-progress"]


def _fails(capsys, argv: list[str], *phrases: str) -> str:
    """Run the CLI, expect exit 2, and return the error line, which must hold every phrase."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[0]
    assert line.startswith("error: ")
    for phrase in phrases:
        assert phrase in line, (phrase, err)
    return line


def _imagenet(tmp_path: Path) -> Path:
    write_images(tmp_path / "imagenet", {w: 2 for w in WNIDS})
    return tmp_path / "imagenet"


def test_missing_data_root(capsys, tmp_path):
    _fails(capsys, ["--suite", "imagenet", *FAST, "--out", str(tmp_path / "run")], "imagenet needs --data-root")


def test_data_root_that_does_not_exist(capsys, tmp_path):
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "nope"), *FAST],
           f"--data-root {tmp_path / 'nope'} does not exist")


def test_images_directly_under_the_root_are_not_the_wnid_layout(capsys, tmp_path):
    write_images(tmp_path / "flat", {".": 3})
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "flat"), *FAST],
           f"{tmp_path / 'flat'} holds no class folders", "<root>/<wnid>/<image>")


def test_a_folder_that_is_not_a_wnid_is_named(capsys, tmp_path):
    write_images(tmp_path / "data", {WNIDS[0]: 1, "cats": 1})
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(tmp_path / "data"), "--allow-partial", *FAST],
           "'cats'", str(tmp_path / "data" / "cats"), "is not a imagenet1k class")


@pytest.mark.parametrize("flag, value, choices", [
    ("--suite", "imagenet-z", "expected one of: aircraft, caltech101, cars"),
    ("--method", "tnet", "expected one of:"),
    ("--teacher", "resnet", "expected one of: cifar-resnet20"),
    ("--setting", "iid", "expected one of: continual, correlated, gradual"),
])
def test_unknown_names_list_the_valid_choices(capsys, tmp_path, flag, value, choices):
    argv = ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
            "--out", str(tmp_path / "run"), flag, value]
    line = _fails(capsys, argv, f"{flag.strip('-')} {value!r}", choices)
    if flag == "--method":
        assert "source" in line


def test_unknown_corruption_and_bad_severity(capsys, tmp_path):
    base = ["--suite", "imagenet-c", "--source", "generated", "--data-root", str(_imagenet(tmp_path)), *FAST]
    _fails(capsys, base + ["--corruptions", "rain"], "unknown corruption(s) ['rain']", "gaussian_noise")
    _fails(capsys, base + ["--severities", "6"], "severities must be in 1..5")


def _corrupt_the_fourth_image_of_the_stream(root: Path) -> Path:
    """The file the stream reaches fourth (folder layouts are shuffled), cut in half mid-JPEG."""
    p = engine.prepare(RunConfig(suite="imagenet", data_root=str(root), allow_partial=True))
    item = p.stream.items[3]
    path = root / p.suite.splits[item.split].source.ids[item.pos]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_image_stops_the_run_naming_it_and_keeps_earlier_predictions(capsys, tmp_path):
    root = _imagenet(tmp_path)
    bad = _corrupt_the_fourth_image_of_the_stream(root)
    out = tmp_path / "run"
    argv = ["--suite", "imagenet", "--data-root", str(root), "--allow-partial", *FAST, "--batch-size", "1",
            "--out", str(out)]
    _fails(capsys, argv, f"corrupt or truncated image {bad}")
    assert len((out / PREDICTIONS).read_text().splitlines()) == 3
    assert not (out / SUMMARY).exists()

    # as the message advises: the same command with --on-error skip resumes and counts the file
    assert main(argv + ["--on-error", "skip"]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    split = summary["splits"]["imagenet"]
    assert (split["n"], split["skipped"]) == (5, 1)
    records = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    (error,) = [r for r in records if r["status"] == "error"]
    assert error["id"] == bad.relative_to(root).as_posix() and str(bad) in error["error"]
    assert not error["correct"] and len(records) == 6


def test_cifar_c_array_length_mismatch(capsys, tmp_path):
    write_arrays(tmp_path / "c", {"fog": image_stack(3)}, [0, 1])
    _fails(capsys, ["--suite", "cifar10-c", "--data-root", str(tmp_path / "c"), "--corruptions", "fog",
                    "--allow-partial", *FAST], "fog.npy holds 3 images but labels.npy holds 2 labels")


def test_pickle_bearing_npy_is_refused(capsys, tmp_path):
    write_arrays(tmp_path / "c", {}, [0, 1])
    np.save(tmp_path / "c" / "images.npy", np.array([object(), None], dtype=object), allow_pickle=True)
    _fails(capsys, ["--suite", "cifar10", "--data-root", str(tmp_path / "c"), "--allow-partial", *FAST],
           "images.npy: refused to load")


def test_an_output_folder_that_cannot_be_written(capsys, tmp_path):
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "run"
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                    "--out", str(out)], f"cannot write the run folder {out}")


def test_a_good_run_exits_0_and_prints_the_table(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"run folder: {out}" in captured.out and "|" in captured.out
    assert "Traceback" not in captured.err and (out / SUMMARY).exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--batch-size", "-3"], "--batch-size must be >= 1, got -3"),
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--limit", "-1"], "--limit must be >= 1"),
    (["--method", "tent", "--lr", "inf"], "method tent: lr must be a finite number > 0, got inf"),
    (["--method", "tent", "--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--method", "tent", "--steps", "-1"], "method tent: steps must be an integer >= 0, got -1"),
    (["--setting", "correlated", "--dirichlet", "nan"], "--dirichlet must be a finite number >= 0"),
    (["--setting", "correlated", "--dirichlet", "inf"], "--dirichlet must be a finite number >= 0"),
    (["--seeds", ""], "--seeds needs at least one seed"),
    (["--method", "tent", "--steps", "2", "--record-steps", "5"], "--record-steps 5 is beyond the 2 steps tent takes"),
    (["--prompts", "ensemble"], "--prompts ensemble builds a CLIP text head; teacher tiny"),
])
def test_bad_values_stop_with_one_line(capsys, tmp_path, extra, phrase):
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                    "--out", str(tmp_path / "run"), *extra], phrase)


def test_labels_outside_the_suites_classes_are_refused(capsys, tmp_path):
    root = write_arrays(tmp_path / "c10", {"images": image_stack(4)}, [0, 3, 12, 1])
    _fails(capsys, ["--suite", "cifar10", "--data-root", str(root), "--allow-partial", *FAST],
           "labels.npy: 1 labels outside the cifar10 classes 0..9 (e.g. 12)")


def test_a_corrupt_image_stops_with_one_line_naming_the_file(capsys, tmp_path):
    root = _imagenet(tmp_path)
    bad = root / WNIDS[1] / "img_002.JPEG"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    line = _fails(capsys, ["--suite", "imagenet", "--data-root", str(root), "--allow-partial", "--teacher", "tiny",
                           "--workers", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")],
                  str(bad), "--on-error skip")
    assert "DataLoader worker" not in line and "Original Traceback" not in line


def test_a_bug_is_not_mistaken_for_bad_input(monkeypatch, capsys):
    """Only user errors print one line; a ValueError raised by a bug shows its traceback (it propagates)."""
    from tta_bench import cli

    def broken(argv):
        raise ValueError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "list", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["list"])


def test_list_shows_every_suite_with_its_size_and_where_its_test_set_comes_from(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "2,463" in lines["flowers102"] and "19,850" in lines["sun397"] and "3,333" in lines["aircraft"]
    assert "clipart 18,523" in lines["domainnet126"] and "7,500,000 per stream" in lines["ccc-medium"]
    assert "test set: CoOp split_zhou_OxfordFlowers.json" in out and "oripress/CCC generate.py --baseline 20" in out
    assert "clip-benchmark/wds_vtab-flowers, holds another test split (official)" in out


def test_domains_is_the_domain_selector_of_domain_suites(capsys, tmp_path):
    _fails(capsys, ["--suite", "domainnet126", "--data-root", str(tmp_path), "--domains", "quickdraw", "--dry-run"],
           "unknown domain(s) ['quickdraw']", "real, clipart, painting, sketch")


def test_list_shows_every_method_with_its_description_and_the_teachers_it_accepts(capsys):
    from tta_bench.methods import METHODS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    methods = out[out.index("\nmethods:\n"):out.index("\nteachers:\n")].splitlines()[2:]
    for entry in METHODS:
        at = next(i for i, line in enumerate(methods) if line.split()[:1] == [entry.name])
        assert entry.help in methods[at] and entry.help
        assert methods[at + 1].strip() == f"teachers: {entry.accepts}" and entry.accepts
    assert METHODS.entry("rotta").accepts != METHODS.entry("cotta").accepts  # said per method, not one default


@pytest.mark.parametrize("extra, phrase", [
    (["--method", "tent", "--opt", "nonsense=1"], "method tent has no option(s) nonsense; it accepts: lr, momentum"),
    (["--method", "tent", "--lr", "inf"], "method tent: lr must be a finite number > 0, got inf"),
    (["--method", "tent", "--opt", "steps=1.5"], "method tent: steps must be an integer >= 0, got '1.5'"),
    (["--method", "memo", "--opt", "crop=centre"], "method memo: crop must be one of resized, pad, got 'centre'"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_method_options_stop_before_anything_is_written(capsys, tmp_path, extra, phrase, dry_run):
    """A dry run checks every method option too, and a real run checks them before its folder exists."""
    _fails(capsys, ["--suite", "imagenet", "--data-root", str(_imagenet(tmp_path)), "--allow-partial", *FAST,
                    "--out", str(tmp_path / "run"), *extra, *(["--dry-run"] if dry_run else [])], phrase)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, phrase", [({"steps": -3}, "steps must be an integer >= 0, got -3"),
                                             ({"steps": 1.5}, "steps must be an integer >= 0, got 1.5"),
                                             ({"lr": 0}, "lr must be a finite number > 0, got 0.0")])
def test_a_run_file_with_bad_method_options_writes_nothing(capsys, tmp_path, options, phrase):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps({"suite": "imagenet", "data_root": str(_imagenet(tmp_path)), "allow_partial": True,
                                    "method": "tent", "method_options": options}))
    _fails(capsys, ["--config", str(run_file), *FAST, "--out", str(tmp_path / "run")], f"method tent: {phrase}")
    assert not (tmp_path / "run").exists()

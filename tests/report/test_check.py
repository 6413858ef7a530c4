"""Regression check against a reference: planted drop, tolerance, comparability (what must be shared), CLI entry."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tta_bench.report import check, check_command, format_check, write_reference

from .conftest import fixture_summaries, write_runs
from tta_bench.vocabulary import SUMMARY


@pytest.fixture
def apm():
    return fixture_summaries()[1]


def test_run_passes_its_own_reference(apm):
    reference = write_reference(apm)
    assert reference["splits"] == {"gaussian_noise-5": 24.0, "defocus_blur-5": 30.0, "fog-5": 40.0}
    assert (reference["suite"], reference["method"], reference["teacher"]) == ("imagenet-c", "apm", "clip-vit-b16")
    assert (reference["source"], reference["subset"], reference["setting"]) == ("published", "full", "reset_each_shift")
    result = check(apm, reference, reference["tolerance"])
    assert result.ok
    assert [row[0] for row in result.rows] == ["gaussian_noise-5", "defocus_blur-5", "fog-5", "mean"]
    assert all(row[3] == 0.0 and row[4] == "ok" for row in result.rows)


def test_planted_drop_fails_and_small_drop_passes(apm):
    reference = write_reference(apm)
    apm["splits"]["fog-5"]["top1"] = 39.5  # within tolerance 1.0
    assert check(apm, reference, 1.0).ok
    apm["splits"]["fog-5"]["top1"] = 37.0
    result = check(apm, reference, 1.0)
    assert not result.ok
    assert ("fog-5", 40.0, 37.0, -3.0, "FAIL") in result.rows
    assert check(apm, reference, 5.0).ok  # a wider tolerance accepts it
    text = format_check(result)
    assert text.startswith("check: FAIL (tolerance 1; 1 of 4 rows failing)")
    assert "fog-5" in text and "-3.00" in text and "FAIL" in text


def test_improvement_passes_flagged(apm):
    reference = write_reference(apm)
    apm["splits"]["fog-5"]["top1"] = 45.0
    result = check(apm, reference, 1.0)
    assert result.ok and ("fog-5", 40.0, 45.0, 5.0, "better") in result.rows


def test_a_run_over_other_splits_is_not_comparable_instead_of_failing_every_row(apm):
    """A 15-corruption reference against a 4-corruption run: "not comparable", listing what differs, no FAIL rows."""
    reference = write_reference(apm)
    reference["splits"] |= {"snow-5": 30.0}
    del apm["splits"]["defocus_blur-5"]
    result = check(apm, reference, 1.0)
    assert not result.ok and not result.comparable and result.rows == []
    assert result.differences == ["splits: reference 4, run 2; not in the run: defocus_blur-5, snow-5"]
    text = format_check(result)
    assert text.startswith("check: NOT COMPARABLE") and "FAIL" not in text


@pytest.mark.parametrize("change, expected", [
    ({"teacher": "clip-vit-l14"}, "teacher: reference 'clip-vit-b16', run 'clip-vit-l14'"),
    ({"source": "generated"}, "source: reference 'published', run 'generated'"),
    ({"data": {"subset": "limit-50"}}, "subset: reference 'full', run 'limit-50'"),
    ({"setting": {"name": "continual"}}, "setting: reference 'reset_each_shift', run 'continual'"),
    ({"method_options": {"preset": "paper"}}, "preset: reference 'cpu', run 'paper'"),
])
def test_runs_differing_from_the_reference_are_not_comparable(apm, change, expected):
    apm["method_options"] = {"preset": "cpu"}
    reference = write_reference(apm)
    assert check(apm, reference, 1.0).ok
    result = check(apm | change, reference, 1.0)
    assert not result.ok and result.differences == [expected]
    assert f"  {expected}" in format_check(result)


def test_a_reference_that_does_not_say_its_subset_is_not_comparable(apm):
    reference = write_reference(apm)
    del reference["subset"]
    assert check(apm, reference, 1.0).differences == ["subset: reference does not say, run 'full'"]


def test_check_command_uses_the_file_tolerance_unless_given(tmp_path, apm):
    reference = write_reference(apm) | {"tolerance": 0.5}
    reference["splits"]["fog-5"] = 41.0  # the run is 1.0 below
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference))
    (run_dir,) = write_runs(tmp_path / "runs", [apm])
    ok, text = check_command(run_dir, path, None)
    assert not ok and "tolerance 0.5" in text
    ok, text = check_command(run_dir, path, 2.0)
    assert ok and text.startswith("check: PASS")


def test_bad_reference_file_is_named(tmp_path, apm):
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"splits": {"fog-5": "high"}}))
    (run_dir,) = write_runs(tmp_path / "runs", [apm])
    with pytest.raises(ValueError, match="reference.json: a reference is a JSON object"):
        check_command(run_dir, path, None)


def test_a_file_of_several_references_picks_the_runs_own(tmp_path):
    import json

    from tta_bench.report import check_command

    run = write_runs(tmp_path / "runs", fixture_summaries()[:1])[0]
    summary = json.loads((run / SUMMARY).read_text())
    own = write_reference(summary)
    other = {**own, "method": "someone-else", "splits": {k: 100.0 for k in own["splits"]}}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"references": [other, own]}))
    ok, text = check_command(run, path, None)
    assert ok, text
    path.write_text(json.dumps({"references": [other]}))
    with pytest.raises(ValueError, match="0 references match"):
        check_command(run, path, None)


@pytest.mark.parametrize("tolerance", ["nan", "-5", "inf"])
def test_a_tolerance_that_is_not_a_finite_non_negative_number_is_refused(tmp_path, apm, capsys, tolerance):
    """`--tolerance nan` used to pass a 6-point drop (every comparison with NaN is false)."""
    from tta_bench.cli import main

    reference = write_reference(apm)
    reference["splits"]["fog-5"] = 46.0  # the run is 6 points below
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference))
    (run_dir,) = write_runs(tmp_path / "runs", [apm])
    assert main(["check", str(run_dir), "--reference", str(path), "--tolerance", tolerance]) == 2
    assert capsys.readouterr().err == (f"error: --tolerance must be a finite number >= 0 (points of top-1), got "
                                       f"{float(tolerance)!r}\n")
    path.write_text(json.dumps(reference | {"tolerance": -1}))
    with pytest.raises(ValueError, match="'tolerance' must be a finite number >= 0"):
        check_command(run_dir, path, None)


def test_a_mean_that_is_not_a_number_fails_instead_of_showing_ok(apm):
    reference = write_reference(apm)
    apm["mean_top1"] = float("nan")
    result = check(apm, reference, 1.0)
    assert not result.ok and result.rows[-1] == ("mean", reference["mean_top1"], None, None, "not a number")
    assert "not a number" in format_check(result)


def test_a_run_generated_from_fewer_images_is_not_comparable_with_its_reference(apm):
    """100 photographs against a reference generated from 500: the clean set differs, and so does the stream."""
    generated = apm | {"source": "generated", "data": {"subset": "full", "generated_from": {"images": 500}},
                       "setting": {"name": "reset_each_shift", "stream_hash": "a" * 64}}
    reference = write_reference(generated)
    assert reference["generated_from"] == 500 and reference["stream_hash"] == "a" * 64
    assert check(generated, reference, 1.0).ok
    small = generated | {"data": {"subset": "full", "generated_from": {"images": 100}},
                         "setting": {"name": "reset_each_shift", "stream_hash": "b" * 64}}
    result = check(small, reference, 1.0)
    assert not result.ok and result.differences == ["generated_from: reference 500, run 100"]
    shuffled = generated | {"setting": {"name": "reset_each_shift", "stream_hash": "b" * 64}}
    assert check(shuffled, reference, 1.0).differences == [
        "stream: the run's samples or their order differ from the reference's (stream_hash bbbbbbbbbbbb vs "
        "aaaaaaaaaaaa)"]
    del reference["generated_from"], reference["stream_hash"]  # an older reference that does not say
    assert check(small, reference, 1.0).differences == ["generated_from: reference does not say, run 100"]


def test_the_ci_reference_says_which_clean_set_its_numbers_come_from():
    reference = Path(__file__).resolve().parents[2] / "results" / "ci" / "reference.json"
    references = json.loads(reference.read_text())["references"]
    assert {r["generated_from"] for r in references} == {500}  # ../shared/data/imagenet-sample


def test_the_published_table_is_not_a_reference_and_check_says_which_command_compares_with_it(tmp_path, apm, capsys):
    from tta_bench.cli import main
    from tta_bench.report.published import DEFAULT_PATH

    (run_dir,) = write_runs(tmp_path / "runs", [apm])
    assert main(["check", str(run_dir), "--reference", str(DEFAULT_PATH)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a table of published numbers, not a reference" in err
    assert "run_bench.py table RUN --published" in err

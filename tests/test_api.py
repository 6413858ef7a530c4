"""The Python API: `from tta_bench import run, RunConfig, load_runs, table`, the documented example
(docs/results.md) run as shown."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

import tta_bench
from readme import blocks
from tta_bench import RunConfig, load_runs, run, table, tables
from tta_bench.errors import UserError
from tta_bench.vocabulary import SUMMARY

TINY = dict(suite="demo", teacher="tiny", corruptions=["fog"], limit=2, num_workers=0, device="cpu", batch_size=2)


def test_importing_the_package_imports_no_torch():
    code = ("import sys, tta_bench; tta_bench.RunConfig; "
            "assert not {'torch', 'pandas'} & set(sys.modules), sorted({'torch', 'pandas'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_returns_the_summary_and_reuses_a_finished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = run(RunConfig(**TINY), progress=False, log=lambda *_: None)
    (folder,) = (tmp_path / "results" / "runs").iterdir()
    assert summary == json.loads((folder / SUMMARY).read_text())
    lines = []
    again = run(TINY, method="source", progress=False, log=lines.append)  # a mapping + keywords: the same run
    assert again == summary and any("reusing its summary" in line for line in lines)
    other = run(TINY, seed=1, method_options={"lr": 0.1}, method="tent", progress=False, log=lambda *_: None)
    assert other["seed"] == 1 and other["method"] == "tent" and other["method_options"]["lr"] == 0.1
    with pytest.raises(UserError, match="unknown key"):
        run(TINY, workers=1)
    with pytest.raises(TypeError):
        run(42)
    frames = tables(load_runs(tmp_path / "results" / "runs"))
    assert sorted(frames["demo"].index) == ["source (tiny) [generated from 4 images, limit-2]",
                                             "tent (tiny) [generated from 4 images, limit-2, one-batch segments]"]
    text = table([summary, other], fmt="latex")
    assert "\\caption{demo: top-1 accuracy (\\%) at severity 5; teacher tiny" in text


def test_load_runs_skips_what_is_not_a_run_with_a_warning(tmp_path, capsys):
    (tmp_path / "stray.json").write_text("{}")
    with pytest.raises(Exception, match="no finished run folders"):
        load_runs(tmp_path / "stray.json")
    assert "warning: skipped" in capsys.readouterr().err
    with pytest.raises(Exception, match="not a folder"):
        load_runs(tmp_path / "stray.json", strict=True)


def test_the_readme_example_runs_as_shown(tmp_path, monkeypatch):
    (code,) = blocks("Python API", "python")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README:Python API", "exec"), {})
    text = out.getvalue()
    assert text.count("\n") > 10 and "source " in text and "bn_adapt " in text
    assert "| source (effnet-lite0) [generated from 4 images]" in text and "| bn_adapt (effnet-lite0) [generated" in text
    assert "\\begin{table}" in text and "\\toprule" in text and "gauss" in text and "contr" in text
    assert len(list((tmp_path / "results" / "runs").iterdir())) == 2
    assert tta_bench.run is run


@pytest.mark.parametrize("fields, phrase", [
    ({"seed": -1}, "seed must be >= 0, got -1"),
    ({"seed": "x"}, "tta_bench.run: seed must be an integer, got 'x'"),
    ({"batch_size": "16.5"}, "tta_bench.run: batch_size must be an integer, got '16.5'"),
    ({"method_options": ["steps", 1]}, "tta_bench.run: method_options must be a mapping, got ['steps', 1]"),
    ({"method": "tent", "method_options": {"steps": 1.5}}, "--steps must be an integer, got 1.5"),
    ({"corruptions": "fog,fog"}, "corruptions lists fog more than once"),
    ({"weights": "missing.th"}, "weights missing.th does not exist"),
])
def test_bad_values_are_refused_in_words_before_anything_is_written(tmp_path, monkeypatch, fields, phrase):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        run(TINY, progress=False, log=lambda *_: None, **fields)
    assert phrase in str(error.value) and "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_text_values_are_converted_as_on_the_command_line():
    from tta_bench.api import as_config

    cfg = as_config(TINY, seed="1", batch_size="16", corruptions="fog,contrast", severities="3,5")
    assert (cfg.seed, cfg.batch_size, cfg.corruptions, cfg.severities) == (1, 16, ["fog", "contrast"], [3, 5])
    assert as_config(RunConfig(seed="2")).seed == 2  # a RunConfig built by hand goes through the same conversion

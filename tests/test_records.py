"""The run folder's name: deterministic, from what the run computes only."""
from __future__ import annotations

from tta_bench.records import RUNS_DIR, default_out


def test_the_default_run_folder_name_depends_on_what_the_run_computes_only(tiny_config):
    cfg = tiny_config(suite="imagenet", out=None)
    name = default_out(cfg)
    assert name.parent == RUNS_DIR and name.name.startswith("imagenet-source-tiny-seed0-")
    assert default_out(tiny_config(suite="imagenet", out=None, num_workers=3)) == name
    assert default_out(tiny_config(suite="imagenet", out=None, limit=5)) != name

"""torchrun sharding: 2 gloo processes on CPU merge to exactly the single-process predictions."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tta_bench.records import read_records

from conftest import CUDA_MARKS, WNIDS, write_images
from tta_bench.vocabulary import PREDICTIONS, SUMMARY

pytestmark = pytest.mark.slow  # torchrun processes
ROOT = Path(__file__).resolve().parents[1]


def torchrun(nproc: int) -> list[str]:
    """The launcher on a port free now (fixed ports collide with a second test session or anything else there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={port}"]


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["run_bench.py", "--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out), "--no-progress",
            "--save-logits", *extra]


def test_two_process_gloo_run_matches_single_process(tmp_path):
    write_images(tmp_path / "val", {w: 7 for w in WNIDS}, size=8)
    single = subprocess.run([sys.executable, *_args(tmp_path / "val", tmp_path / "single")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    launcher = torchrun(2)
    sharded = subprocess.run([*launcher, *_args(tmp_path / "val", tmp_path / "sharded")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert sharded.returncode == 0, sharded.stderr
    # every field equal, the logits' row references included: the merge realigns them per split
    assert read_records(tmp_path / "sharded" / PREDICTIONS) == read_records(tmp_path / "single" / PREDICTIONS)
    single, sharded = (np.load(tmp_path / run / "logits" / "imagenet.npz") for run in ("single", "sharded"))
    assert np.array_equal(single["ids"], sharded["ids"])
    # equal up to float16 rounding: a rank sees other batch sizes, and CPU convolution kernels (channels_last) block
    # by batch
    np.testing.assert_allclose(single["logits"].astype(np.float32), sharded["logits"].astype(np.float32), atol=2e-3)
    a = json.loads((tmp_path / "single" / SUMMARY).read_text())
    b = json.loads((tmp_path / "sharded" / SUMMARY).read_text())
    assert b["world_size"] == 2 and a["splits"] == b["splits"]
    assert not (tmp_path / "sharded" / "shards").exists()  # merged into predictions.jsonl


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), pytest.param("cuda", "nccl", marks=CUDA_MARKS)])
def test_one_process_torchrun_joins_a_process_group_and_equals_a_plain_run(tmp_path, device, backend):
    """A one-process torchrun runs through the collective path (NCCL on CUDA) and gives the plain run's output."""
    write_images(tmp_path / "val", {w: 5 for w in WNIDS}, size=8)
    args = [*_args(tmp_path / "val", tmp_path / "x"), "--device", device]
    plain = subprocess.run([sys.executable, *args[:-2], "--out", str(tmp_path / "plain"), "--device", device],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    launcher = torchrun(1)
    launched = subprocess.run([*launcher, *args[:-2], "--out", str(tmp_path / "launched"), "--device", device],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr
    assert read_records(tmp_path / "launched" / PREDICTIONS) == read_records(tmp_path / "plain" / PREDICTIONS)
    a = json.loads((tmp_path / "plain" / SUMMARY).read_text())
    b = json.loads((tmp_path / "launched" / SUMMARY).read_text())
    assert a["splits"] == b["splits"] and (a["process_group"], b["process_group"]) == (None, backend)


def test_a_killed_torchrun_resumes_to_the_single_process_predictions(tmp_path):
    """TENT over two domains, one reset segment per rank; the whole torchrun is killed mid-run (as when one rank
    dies), then rerun: every prediction equals a plain single-process run's."""
    write_images(tmp_path / "c", {f"{c}/5/{w}": 12 for c in ("fog", "snow") for w in WNIDS}, size=224)

    def args(out: str) -> list[str]:
        return ["run_bench.py", "--suite", "imagenet-c", "--data-root", str(tmp_path / "c"), "--corruptions",
                "fog,snow", "--allow-partial", "--teacher", "tiny", "--method", "tent", "--lr", "0.5",
                "--batch-size", "2", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / out),
                "--no-progress"]

    single = subprocess.run([sys.executable, *args("single")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    launcher = torchrun(2)
    proc = subprocess.Popen([*launcher, *args("sharded")], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    shards = tmp_path / "sharded" / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if sum(p.read_bytes().count(b"\n") for p in shards.glob("*.jsonl")) >= 10:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode != 0, "the kill must land mid-run"
    again = subprocess.run([*torchrun(2), *args("sharded")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert read_records(tmp_path / "sharded" / PREDICTIONS) == read_records(tmp_path / "single" / PREDICTIONS)

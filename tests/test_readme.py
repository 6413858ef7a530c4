"""What the documentation shows is what CI runs: every command of every ``bash`` block in README.md and the docs/*.md
it links is typed here through a shell, as written, and its exit code and output are checked.

Each command has a ``Case`` in CASES, keyed by its exact text (tests/readme.py ``commands``): what to assert, and
the stand-in it runs on where it names something a user has and CI has not. Data folders (``/data/...``) become small
generated copies in the same layout, with ``--dry-run`` appended where the real data would be large (``append``);
the downloads of the quickstart come from a cache filled from ../shared/data (``setup``); commands that need a
network or a cluster run against this machine's package index or a local ``sbatch`` that runs the job array here.
A documented command without a case, or a case whose command the documentation no longer shows, fails
``test_every_documented_command_has_a_case``; a ``python`` or ``yaml`` block must be read by some test.

Blocks run in a scratch checkout (its own results/), each block in order in one folder: ``pytest -m readme``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, WNIDS, write_images
from readme import ROOT, Block, commands, fenced_blocks

pytestmark = [pytest.mark.readme, pytest.mark.slow]

TIMEOUT = 600  # seconds per command: a hung command fails instead of stalling CI


@dataclass(frozen=True)
class Case:
    """How CI types one documented command."""

    expect: tuple[str, ...] = ()  # substrings of the output (stdout and stderr)
    rc: int = 0
    replace: tuple[tuple[str, str], ...] = ()  # (text, stand-in); stand-ins may name {data}, {root}, {runs}, ...
    append: str = ""  # options added at the end (--dry-run for data CI does not have)
    setup: tuple[str, ...] = ()  # stand-ins to prepare first (SETUPS)
    check: Callable[[str, Path], None] | None = None  # a further assertion on the output and the scratch folder
    ci: bool = False  # .ci/run types it itself (the test command): checked to be there, not run from a test


# -- checks -----------------------------------------------------------------------------------------------------------

def _means(output: str) -> dict[str, float]:
    """method -> mean top-1 from a Markdown table of `table` (the first word of each row's label)."""
    header = next(line for line in output.splitlines() if line.startswith("| method"))
    mean = [c.strip() for c in header.strip("|").split("|")].index("mean")
    rows = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith(("| method", "|:"))]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {cell[0].split()[0]: float(cell[mean]) for cell in cells if cell[mean]}


def _adaptation_beats_source(output: str, cwd: Path) -> None:
    means = _means(output)
    assert set(means) == {"source", "bn_adapt", "tent"}, means
    assert means["tent"] > means["source"] + 10 and means["bn_adapt"] > means["source"] + 10, means


def _tent_beats_its_source_model(output: str, cwd: Path) -> None:
    tent = _means(output)["tent"]
    source = _run("python run_bench.py --config examples/run.yaml --method source", cwd)
    assert source.returncode == 0, source.stdout
    assert tent > _means(source.stdout)["source"] + 10
    (run,) = (cwd / "results" / "runs").glob("cifar10-c-tent-*")
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,split,samples,top1") and len(log) == 1 + 4 * 2  # 300 per domain: batches 200+100


def _plots_written(output: str, cwd: Path) -> None:
    assert list((cwd / "results" / "plots").glob("*.png"))


def _two_tasks_ran_the_grid(output: str, cwd: Path) -> None:
    assert len(list((cwd / "results" / "sweeps" / "my_grid").glob("*/summary.json"))) == 4


def _torch_kept(output: str, cwd: Path) -> None:
    would = [line for line in output.splitlines() if line.startswith("Would install")]
    assert would and "torch" not in would[0], would  # the installed torch satisfies the declared range


def _ci_runs_it(command: str) -> None:
    assert command in (ROOT / ".ci" / "run").read_text().splitlines(), f".ci/run does not run {command!r}"


# -- stand-ins ----------------------------------------------------------------------------------------------------------

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")


def _imagenet_c(scratch: Path) -> None:
    write_images(scratch / "data" / "ImageNet-C", {f"{c}/5/{w}": 1 for c in CORRUPTIONS for w in WNIDS[:2]}, size=24)


def _wnid_folders(root: Path, wnids: list[str]) -> None:
    write_images(root, {w: 1 for w in wnids}, size=24)


def _class_list(name: str) -> list[str]:
    from tta_bench.data.labels import class_list

    return list(class_list(name))


def _imagenet_val(scratch: Path) -> None:
    _wnid_folders(scratch / "data" / "imagenet" / "val", list(WNIDS))


def _imagenet_r(scratch: Path) -> None:
    _wnid_folders(scratch / "data" / "imagenet-r", _class_list("imagenet-r")[:2])


def _cifar_c(scratch: Path) -> None:
    """CIFAR-10-C's files (15 corruptions x 5 severities x 10,000), sparse: only the labels are written."""
    root = scratch / "data" / "CIFAR-10-C"
    root.mkdir(parents=True)
    np.save(root / "labels.npy", np.arange(50_000, dtype=np.int64) % 10)
    for c in CORRUPTIONS:
        np.lib.format.open_memmap(root / f"{c}.npy", mode="w+", dtype=np.uint8, shape=(50_000, 32, 32, 3)).flush()


def _paper_data(scratch: Path) -> None:
    """A data root holding one small folder per suite of TPT's Table 1."""
    root = scratch / "data"
    for suite, wnids in (("imagenet", list(WNIDS)), ("imagenet-sketch", list(WNIDS)),
                         ("imagenet-a", _class_list("imagenet-a")[:2]), ("imagenet-r", _class_list("imagenet-r")[:2])):
        _wnid_folders(root / suite, wnids)
    write_images(root / "imagenet-v2", {"0": 1, "1": 1}, size=24)


def _pets(scratch: Path) -> None:
    from data.layouts.test_fine_grained import write_coop

    write_coop(scratch / "data" / "oxford_pets", "pets")


def _domainnet(scratch: Path) -> None:
    from data.layouts.test_domainnet import write_domainnet

    write_domainnet(scratch / "data" / "DomainNet-126")
    (scratch / "checkout" / "best_real_2020.pth").write_bytes(b"")  # a dry run checks that it exists


def _cifar_c_weights(scratch: Path) -> None:
    if not (scratch / "data" / "CIFAR-10-C").is_dir():
        _cifar_c(scratch)
    (scratch / "checkout" / "resnet56.th").write_bytes(b"")  # a dry run checks that it exists


def _cache(scratch: Path) -> None:
    """The quickstart's downloads, as a first run leaves them in the cache, from ../shared/data: the CIFAR-10 test
    images (here 2,000 stored as JPEG) as arrays, and the release weights."""
    if not SHARED.is_dir():
        pytest.skip(f"the quickstart runs on the real data of {SHARED}")
    folder = scratch / "cache" / "datasets" / "cifar10"
    folder.mkdir(parents=True)
    classes = sorted(p.name for p in (SHARED / "cifar10-test-jpeg").iterdir())
    files = [(k, f) for k, c in enumerate(classes) for f in sorted((SHARED / "cifar10-test-jpeg" / c).iterdir())]
    np.save(folder / "images.npy", np.stack([np.asarray(Image.open(f).convert("RGB")) for _, f in files]))
    np.save(folder / "labels.npy", np.asarray([k for k, _ in files], dtype=np.int64))
    (scratch / "cache" / "weights").mkdir()
    shutil.copyfile(SHARED / "weights" / "resnet20-12fca82f.th", scratch / "cache" / "weights" / "resnet20-12fca82f.th")


def _runs(scratch: Path) -> None:
    """Two finished runs in results/runs (a tiny random teacher on a small ImageNet folder, logits saved), and a
    reference that the first passes."""
    from tta_bench import RunConfig, run
    from tta_bench.report.check import write_reference

    _imagenet_val(scratch)
    for method in ("source", "bn_adapt"):
        summary = run(RunConfig(suite="imagenet", data_root=str(scratch / "data" / "imagenet" / "val"),
                                allow_partial=True, teacher="tiny", method=method, batch_size=3, num_workers=0,
                                device="cpu", save_logits=True,
                                out=str(scratch / "checkout" / "results" / "runs" / f"imagenet-{method}-tiny")),
                      progress=False)
        if method == "source":
            (scratch / "reference.json").write_text(json.dumps(write_reference(summary)))


def _my_grid(scratch: Path) -> None:
    _imagenet_val(scratch)
    (scratch / "checkout" / "my_grid.yaml").write_text(
        "name: my_grid\nbase: {suite: imagenet, teacher: tiny, allow_partial: true, num_workers: 0, device: cpu, "
        f"data_root: {scratch / 'data' / 'imagenet' / 'val'}}}\ngrid: {{method: [source, bn_adapt], seed: [0, 1]}}\n")


SETUPS: dict[str, Callable[[Path], None]] = {
    "imagenet_c": _imagenet_c, "imagenet_val": _imagenet_val, "imagenet_r": _imagenet_r, "cifar_c": _cifar_c,
    "cifar_c_weights": _cifar_c_weights,
    "paper_data": _paper_data, "pets": _pets, "domainnet": _domainnet, "cache": _cache, "runs": _runs,
    "my_grid": _my_grid,
}

# -- the cases ---------------------------------------------------------------------------------------------------------

IMAGENET_C = (("/data/ImageNet-C", "{data}/ImageNet-C"),)
DRY = " --allow-partial --dry-run"  # a few images per folder: the published sizes do not hold
RUN = (("results/runs/RUN", "results/runs/imagenet-source-tiny"),)
INSTALL = (("pip install -e '.[test]'", "pip install --dry-run -e '{root}[test]'"),)

CASES: dict[str, Case] = {
    # README: the fresh-machine lines
    "pip install -e '.[test]' && python run_bench.py": Case(
        ("Would install", "| source (effnet-lite0) [generated from 4 images]", "run folder: results/runs/demo-"),
        replace=INSTALL, check=_torch_kept),
    "python -m pytest -q": Case(ci=True),
    # README: the quickstart, with its downloads served from the cache, and offline on local copies
    "python run_bench.py sweep examples/sweep.yaml": Case(("sweep: 3 run(s) run, 0 reused, 0 failed",),
                                                          setup=("cache",)),
    "python run_bench.py table results/sweeps/quickstart": Case(("## cifar10-c (top1)",),
                                                                check=_adaptation_beats_source),
    "python run_bench.py sweep examples/sweep.yaml --set data_root=/data/cifar10 "
    "--set weights=/data/resnet20-12fca82f.th": Case(
        ("sweep: 3 run(s) run, 0 reused, 0 failed",),
        replace=(("/data/cifar10", "{shared}/cifar10-test-jpeg"),
                 ("/data/resnet20-12fca82f.th", "{shared}/weights/resnet20-12fca82f.th")),
        check=lambda out, cwd: _adaptation_beats_source(_run("python run_bench.py table results/sweeps/quickstart",
                                                             cwd).stdout, cwd)),
    # README: usage
    "python run_bench.py list": Case(("suites", "tent ", "CIFAR: Adam lr 1e-3, ImageNet: SGD lr 0.00025",
                                      "cifar-resnet20")),
    "python run_bench.py --help": Case(("usage: run_bench.py", "--log {csv,tensorboard,wandb}")),
    "python run_bench.py --config examples/run.yaml --log csv": Case(
        ("| tent (cifar-resnet20)",), setup=("cache",), check=_tent_beats_its_source_model),
    "python run_bench.py --suite imagenet-c --method tent --data-root /data/ImageNet-C": Case(
        ("suite imagenet-c (published", "gaussian_noise-5", "jpeg_compression-5", "tent defaults for imagenet"),
        replace=IMAGENET_C, append=DRY, setup=("imagenet_c",)),
    "python run_bench.py table results/runs/* --format latex": Case((r"\begin{table}", "bn\\_adapt"),
                                                                   setup=("runs",)),
    # README: installation on a CPU-only machine (no network here: this machine's package index, --dry-run)
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": Case(
        ("Requirement already satisfied: torch",),
        replace=(("--index-url https://download.pytorch.org/whl/cpu", "--dry-run"),)),
    "pip install -e '.[test]'": Case(("Would install",), replace=INSTALL, check=_torch_kept),
    # docs/running.md: running a benchmark (data of your own: stand-ins, dry runs)
    "python run_bench.py --suite imagenet-c --method source --data-root /data/ImageNet-C": Case(
        ("suite imagenet-c (published", "fog-5", "run folder: results/runs/imagenet-c-source-effnet-lite0-seed0-"),
        replace=IMAGENET_C, append=DRY, setup=("imagenet_c",)),
    "python run_bench.py --suite imagenet-c --method apm --teacher clip:ViT-L-14/openai --data-root /data/ImageNet-C":
        Case(("suite imagenet-c (published", "run folder: results/runs/imagenet-c-apm-clip-ViT-L-14-openai-seed0-"),
             replace=IMAGENET_C, append=DRY, setup=("imagenet_c",)),
    "python run_bench.py --suite imagenet-r --method tpt --teacher clip:ViT-B-16/openai --data-root /data/imagenet-r":
        Case(("suite imagenet-r (published", "imagenet-r", "2 samples"),
             replace=(("/data/imagenet-r", "{data}/imagenet-r"),), append=DRY, setup=("imagenet_r",)),
    "python run_bench.py --suite cifar10-c --method tent --teacher cifar-resnet20 --data-root /data/CIFAR-10-C": Case(
        ("suite cifar10-c (published, full)", "10,000 samples", "batch size 200"),
        replace=(("/data/CIFAR-10-C", "{data}/CIFAR-10-C"),), append=" --dry-run", setup=("cifar_c",)),
    "python run_bench.py --suite imagenet-c --source generated --data-root /data/imagenet/val "
    "--corruptions gaussian_noise,fog": Case(
        ("suite imagenet-c (generated", "gaussian_noise-5", "fog-5", "3 samples"),
        replace=(("/data/imagenet/val", "{data}/imagenet/val"),), append=" --dry-run", setup=("imagenet_val",)),
    "python run_bench.py --config results/runs/RUN/config.json": Case(("is complete; reusing its summary",),
                                                                    replace=RUN, setup=("runs",)),
    # docs/running.md: scaling out (two local processes; a job array of two tasks run here by a stand-in sbatch)
    "torchrun --nproc_per_node=8 run_bench.py --suite imagenet-c --method apm --teacher clip:ViT-L-14/openai "
    "--data-root /data/ImageNet-C": Case(
        ("suite imagenet-c (published",),
        replace=(("torchrun --nproc_per_node=8", "torchrun --standalone --nproc_per_node=2"), *IMAGENET_C),
        append=DRY, setup=("imagenet_c",)),
    "python run_bench.py sweep my_grid.yaml --dry-run": Case(("4 of 4 runs in this shard, 0 finished",),
                                                            setup=("my_grid",)),
    'sbatch --array=0-15 --wrap "python run_bench.py sweep my_grid.yaml"': Case(
        ("(2 of 4 in this shard)",), replace=(("--array=0-15", "--array=0-1"),), check=_two_tasks_ran_the_grid),
    "python run_bench.py table results/sweeps/my_grid": Case(("| bn_adapt (tiny)", "| source (tiny)", "n=2 seeds")),
    "python run_bench.py reproduce tpt-table1 --data-root /data": Case(
        ("15 of 15 runs in this shard",), replace=(("--data-root /data", "--data-root {data}"),), append=" --dry-run",
        setup=("paper_data",)),
    "python run_bench.py reproduce unified-cifar10c --data-root /data/CIFAR-10-C --set teacher=cifar-resnet56 "
    "--set weights=resnet56.th": Case(
        ("setting=correlated, method=lame, seed=5", "120 of 120 runs in this shard"),
        replace=(("/data/CIFAR-10-C", "{data}/CIFAR-10-C"),), append=" --dry-run", setup=("cifar_c_weights",)),
    # docs/protocols.md
    "python run_bench.py --suite pets --method tpt --teacher clip:ViT-B-16/openai --data-root /data/oxford_pets": Case(
        ("suite pets (published", "3 samples"), replace=(("/data/oxford_pets", "{data}/oxford_pets"),), append=DRY,
        setup=("pets",)),
    "python run_bench.py --suite domainnet126 --method tent --teacher domainnet126-resnet50 --weights "
    "best_real_2020.pth --data-root /data/DomainNet-126 --setting continual": Case(
        ("setting continual", "clipart", "painting", "sketch"),
        replace=(("/data/DomainNet-126", "{data}/DomainNet-126"),), append=DRY, setup=("domainnet",)),
    "python run_bench.py --suite ccc-medium --method tent --data-root /data/imagenet/val --domains speed_1000 "
    "--limit 20000": Case(("suite ccc-medium (generated", "speed_1000", "20,000 samples"),
                          replace=(("/data/imagenet/val", "{data}/imagenet/val"),), append=" --dry-run",
                          setup=("imagenet_val",)),
    # docs/results.md: tables, plots, the gate, metrics (two finished runs of a tiny teacher; a reference the first
    # passes: results/ci/reference.json itself is CI's accuracy gate on real data, .ci/run)
    "python run_bench.py table results/runs/*": Case(("| source (tiny)", "| bn_adapt (tiny)"), setup=("runs",)),
    "python run_bench.py table results/runs/* --format latex --published": Case((r"\begin{table}",)),
    "python run_bench.py table results/runs/* --ci --baseline source": Case(("| source (tiny)", "McNemar")),
    "python run_bench.py compare results/runs/RUN_A results/runs/RUN_B": Case(
        ("McNemar",), replace=(("results/runs/RUN_A", "results/runs/imagenet-source-tiny"),
                               ("results/runs/RUN_B", "results/runs/imagenet-bn_adapt-tiny"))),
    "python run_bench.py plot results/runs/* --out results/plots": Case(("results/plots",), check=_plots_written),
    "python run_bench.py check results/runs/RUN --reference results/ci/reference.json --tolerance 1.0": Case(
        ("check: PASS",), replace=(*RUN, ("results/ci/reference.json", "{scratch}/reference.json"))),
    "python run_bench.py metrics results/runs/RUN --metric top1,top5,ece,nll,brier,per-class": Case(
        ("ece",), replace=RUN, setup=("runs",)),
    "python run_bench.py table results/runs/RUN --metric ece": Case(("ece",), replace=RUN),
}

# -- running ----------------------------------------------------------------------------------------------------------


def _bin(scratch: Path) -> Path:
    """python, pip and torchrun of this interpreter first on PATH, and a local sbatch that runs a job array's tasks
    here one after another (SLURM_ARRAY_TASK_ID / _COUNT set as SLURM would)."""
    bin_ = scratch / "bin"
    bin_.mkdir()
    scripts = {
        "python": f'exec {sys.executable} "$@"',
        "pip": f'exec {sys.executable} -m pip "$@"',
        "torchrun": f'exec {sys.executable} -m torch.distributed.run "$@"',
        "sbatch": 'array=""; wrap=""\nwhile (($#)); do case $1 in --array=*) array=${1#--array=} ;; '
                  '--wrap) wrap=$2; shift ;; esac; shift; done\nfirst=${array%-*} last=${array#*-}\n'
                  'for ((i = first; i <= last; i++)); do SLURM_ARRAY_TASK_ID=$i '
                  'SLURM_ARRAY_TASK_COUNT=$((last - first + 1)) bash -c "$wrap" || exit $?; done',
    }
    for name, body in scripts.items():
        (bin_ / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    return bin_


def _scratch(tmp_path: Path) -> Path:
    """A checkout to run documented commands in: the project's files linked, its own results/ and cache, and
    ../shared/data where the real checkout has it."""
    checkout = tmp_path / "checkout"
    (checkout / "results").mkdir(parents=True)
    for name in ("run_bench.py", "examples", "suites", "benchmarks"):
        (checkout / name).symlink_to(ROOT / name)
    for name in ("ci", "published"):
        (checkout / "results" / name).symlink_to(ROOT / "results" / name)
    if SHARED.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(SHARED)
    _bin(tmp_path)
    return checkout


def _env(scratch: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{scratch / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "TTA_BENCH_CACHE": str(scratch / "cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(cwd.parent), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def _typed(command: str, case: Case, scratch: Path) -> str:
    fields = {"data": scratch / "data", "root": ROOT, "scratch": scratch, "shared": scratch / "shared" / "data"}
    for text, standin in case.replace:
        assert text in command, f"stand-in for {text!r}, which {command!r} does not hold"
        command = command.replace(text, standin.format(**fields))
    return command + case.append


def _bash_blocks() -> list[Block]:
    return [b for b in fenced_blocks() if b.language == "bash"]


def _uncovered(blocks: list[Block], cases: dict[str, Case]) -> tuple[list[str], list[str]]:
    """Documented commands without a case, and cases of commands no block shows."""
    documented = [c for b in blocks for c in commands(b)]
    return [c for c in documented if c not in cases], [c for c in cases if c not in documented]


def test_every_documented_command_has_a_case():
    missing, stale = _uncovered(_bash_blocks(), CASES)
    assert not missing, "documented commands that no test types (add a Case in tests/test_readme.py):\n" + \
        "\n".join(missing)
    assert not stale, "cases of commands the documentation no longer shows:\n" + "\n".join(stale)


def test_every_other_block_is_read_by_a_test():
    """Python and YAML blocks run in the tests of what they show (test_api, test_extending): a block in a section no
    test reads with blocks(heading, language) is untested documentation."""
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    unread = [f"{b.name} ({b.language}, under {b.heading!r})" for b in fenced_blocks() if b.language != "bash"
              and f'blocks("{b.heading}", "{b.language}")' not in sources]
    assert not unread, "blocks no test reads:\n" + "\n".join(unread)


def _run_block(block: Block, cases: dict[str, Case], tmp_path: Path) -> None:
    checkout = _scratch(tmp_path)
    for command in commands(block):
        case = cases[command]
        if case.ci:
            _ci_runs_it(command)
            continue
        for name in case.setup:
            SETUPS[name](tmp_path)
        typed = _typed(command, case, tmp_path)
        done = _run(typed, checkout)
        assert done.returncode == case.rc, f"{typed}\nexit {done.returncode}, expected {case.rc}:\n{done.stdout[-4000:]}"
        for text in case.expect:
            assert text in done.stdout, f"{typed}\ndoes not print {text!r}:\n{done.stdout[-4000:]}"
        if case.check:
            case.check(done.stdout, checkout)


@pytest.mark.parametrize("block", _bash_blocks(), ids=lambda b: b.name)
def test_a_documented_block_runs_as_shown(block, tmp_path):
    _run_block(block, CASES, tmp_path)


def test_the_collector_fails_an_untyped_and_a_broken_command(tmp_path):
    """A block with a command no case types fails the completeness check; a command that breaks (here a suite
    renamed under the documentation's feet) fails its block."""
    broken = "python run_bench.py --suite imagenet-c-old --method source --dry-run"
    block = Block("README.md", "Usage", 1, "bash", f"python run_bench.py list\n{broken}   # a comment\n")
    assert _uncovered([block], {"python run_bench.py list": CASES["python run_bench.py list"]}) == ([broken], [])
    with pytest.raises(AssertionError, match=r"exit 2, expected 0:\s+error: unknown suite 'imagenet-c-old'"):
        _run_block(block, {**CASES, broken: Case(("suite imagenet-c",))}, tmp_path)

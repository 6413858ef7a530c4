"""Command line: ``run_bench.py [run options]`` runs a benchmark; subcommands read or compare run folders.

User errors (bad names, missing folders, wrong layouts) print one message and exit 2, no traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Callable, Sequence

from .config import SOURCES, RunConfig, parse_key_values
from .errors import UserError
from .registry import UnknownNameError

DEMO_HINT = """examples:
  python run_bench.py                        # offline demo: skimage photographs, generated corruptions, EfficientNet-Lite0
  python run_bench.py --suite imagenet-c --method source --data-root /data/ImageNet-C
  python run_bench.py --suite imagenet-c --method apm --teacher clip:ViT-L-14/openai --data-root /data/ImageNet-C
  python run_bench.py --suite imagenet-c --source generated --data-root /data/imagenet/val --corruptions gaussian_noise,fog
  python run_bench.py --suite cifar10-c --method tent --teacher cifar-resnet20 --weights resnet20.th --data-root /data/CIFAR-10-C
  python run_bench.py --config examples/run.yaml   # a run file; options typed after it override it
  python run_bench.py list                   # suites, methods, teachers, settings
  python run_bench.py table results/runs/*   # comparison table of finished runs
subcommands: list, table, plot, check, metrics, sweep, reproduce, islands (each has --help)"""


def _csv(cast: Callable = str) -> Callable[[str], list]:
    return lambda text: [cast(t.strip()) for t in text.split(",") if t.strip()]


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_bench.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DEMO_HINT,
        description="Evaluate a test-time adaptation / training method on a distribution-shift suite. "
                    "Writes per-sample predictions, summary.json (accuracy per split, provenance, cost) and prints a "
                    "Markdown table. Rerunning the same command resumes an interrupted run.")
    d = RunConfig()
    g = p.add_argument_group("what to run")
    g.add_argument("--config", metavar="FILE",
                   help="a run file (YAML of RunConfig fields, as a sweep's cells; examples/run.yaml) or a run folder's "
                        "config.json (reruns that run exactly); options given here override it")
    g.add_argument("--suite", default=d.suite, help="benchmark suite (see `list`); default: %(default)s (offline)")
    g.add_argument("--method", default=d.method, help="method (see `list`); default: %(default)s")
    g.add_argument("--teacher", default=d.teacher,
                   help="frozen model: clip:<arch>/<pretrained>, dino:<timm>, timm:<timm>, effnet-lite0, "
                        "cifar-resnet20, ... (default: %(default)s)")
    g.add_argument("--weights", help="local checkpoint for the teacher instead of its default download")
    g.add_argument("--head", help="linear head file for a backbone without one (DINO)")
    g.add_argument("--prompts", default=d.prompts,
                   help="CLIP text head: single ('a photo of a {}.'), apm ('a photo of a {}'), ensemble (CLIP's "
                        "templates: 80 for ImageNet, the dataset's own for the fine-grained suites), coop (CoOp's "
                        "prompt of a fine-grained suite) or a prompt file; default: the method's reference (APM: apm; "
                        "others: single)")
    g = p.add_argument_group("data")
    g.add_argument("--data-root", help="dataset folder in its published layout (or a saved HF dataset / clean set)")
    g.add_argument("--source", choices=SOURCES, help="published layout, Hugging Face hub, or corruptions generated "
                                                      "on the fly from the clean set (default: the suite's)")
    g.add_argument("--corruptions", type=_csv(), help="comma list, default: all 15")
    g.add_argument("--domains", dest="corruptions", type=_csv(),
                   help="domain suites: which domains in which order (DomainNet-126: real,clipart,painting,sketch; "
                        "CCC: speed_1000 ...); the same field as --corruptions")
    g.add_argument("--severities", type=_csv(int), help="comma list of 1-5, default: 5 (as papers' tables)")
    g.add_argument("--subset", help="5k: the RobustBench 5,000-image ImageNet list")
    g.add_argument("--limit", type=int, help="evaluate N samples per split, evenly spread (quick runs; marked in tables)")
    g.add_argument("--allow-partial", action="store_true", help="run on an incomplete dataset (recorded, marked)")
    g.add_argument("--hub-id", help="Hugging Face dataset id overriding the suite's")
    g.add_argument("--hub-split", help="Hugging Face split overriding the suite's")
    g.add_argument("--label-index", choices=("imagenet1k", "suite"),
                   help="hub copies with integer labels: they index ImageNet-1k or the suite's own classes (0..199 for "
                        "ImageNet-R/-A); default: the suite's for its known Hub ids (suites/*.yaml)")
    g.add_argument("--image-column", help="hub copies: the image column, when not the suite's or a usual name")
    g.add_argument("--label-column", help="hub copies: the label column, when not the suite's or a usual name")
    g.add_argument("--source-data", help="clean images in the clean suite's layout for methods that need source "
                                         "statistics before the stream (EATA); default for generated suites: the "
                                         "clean set of --data-root")
    g.add_argument("--on-error", choices=("stop", "skip"), default=d.on_error,
                   help="a corrupt image stops the run (default) or is skipped and counted")
    g = p.add_argument_group("test stream")
    g.add_argument("--setting", default=d.setting, help="stream protocol (see `list`); default: %(default)s")
    g.add_argument("--dirichlet", type=float, default=d.dirichlet,
                   help="class-correlation DELTA of *correlated settings (default: 0.01 for ImageNet suites, 0.1 "
                        "otherwise, as the unified benchmark; 0 sorts by class)")
    g.add_argument("--sorter", default=d.sorter, help="class-correlated order: note (the unified benchmark's "
                                                      "sort_by_dirichlet, the default) or rotta (RoTTA's sampler)")
    g.add_argument("--seed", type=int, default=d.seed, help="fixes stream order, augmentations and initialisations")
    g.add_argument("--seeds", type=_csv(int), help="comma list: one run folder per seed, then mean ± std")
    g = p.add_argument_group("method options (defaults: the method's paper)")
    g.add_argument("--steps", type=int, help="adaptation steps per sample or batch")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--reset", choices=("episodic", "online"), help="online methods: reset every batch or keep adapting")
    g.add_argument("--apm-preset", help="APM: auto (the default: paper with a CLIP/DINO teacher on CUDA, else cpu), "
                                        "paper (p14, g32, 448 px, MLP to 768, Adam 1e-4, 250 steps) or cpu")
    g.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="any other method option")
    g = p.add_argument_group("execution and outputs")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="samples per batch (default: the method's for the suite family, e.g. TENT 200 on CIFAR, 64 on "
                        "ImageNet; else 64)")
    g.add_argument("--workers", type=int, default=d.num_workers, help="DataLoader workers")
    g.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    g.add_argument("--precision", default=d.precision,
                   help="auto (the method's reference precision on CUDA: bf16 autocast for APM and TPT, float32 "
                        "otherwise; float32 on the CPU), fp32 or bf16")
    g.add_argument("--out", help="run folder (default: results/runs/<suite>-<method>-<teacher>-seed<S>-<config hash>)")
    g.add_argument("--overwrite", action="store_true", help="discard a run folder of another configuration")
    g.add_argument("--save-logits", action="store_true", help="keep every sample's logits (float16, logits/<split>.npz)")
    g.add_argument("--record-steps", type=_csv(int), help="iterative methods: record the prediction at these steps")
    g.add_argument("--dry-run", action="store_true", help="print the stream plan and exit")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_opts(items: Sequence[str]) -> dict[str, object]:
    """``--opt KEY=VALUE`` items -> method options (values stay strings; the method converts them)."""
    return parse_key_values(list(items), "--opt")


def config_from_args(a: argparse.Namespace) -> RunConfig:
    options = parse_opts(a.opt)
    for k in ("steps", "lr", "reset"):
        if getattr(a, k) is not None:
            options[k] = getattr(a, k)
    if a.apm_preset is not None:
        options["preset"] = a.apm_preset
    return RunConfig(suite=a.suite, method=a.method, teacher=a.teacher, data_root=a.data_root, source=a.source,
                     corruptions=a.corruptions, severities=a.severities, limit=a.limit, subset=a.subset,
                     setting=a.setting, dirichlet=a.dirichlet, sorter=a.sorter, seed=a.seed, batch_size=a.batch_size,
                     num_workers=a.workers, device=a.device, precision=a.precision, out=a.out, prompts=a.prompts,
                     weights=a.weights, head=a.head, source_data=a.source_data,
                     hub_id=a.hub_id, hub_split=a.hub_split, label_index=a.label_index, image_column=a.image_column,
                     label_column=a.label_column, on_error=a.on_error, allow_partial=a.allow_partial,
                     overwrite=a.overwrite, save_logits=a.save_logits, record_steps=a.record_steps,
                     method_options=options)


def cmd_run(argv: Sequence[str]) -> int:
    a = run_parser().parse_args(argv)
    cfg = config_from_args(a)
    if a.config:  # the file's fields under the options typed here
        from .runconfig_file import command_line_fields, config_from_file, given_options

        cfg = config_from_file(a.config, command_line_fields(a, given_options(run_parser, list(argv)), cfg))
    from . import engine  # torch: only once there is something to run (--help stays fast)
    from .records import default_out
    from .report.tables import build_tables, render
    from .runconfig_file import resolved

    cfg = resolved(cfg)
    if a.dry_run:
        print(engine.plan(engine.prepare(cfg)))
        return 0
    if a.seeds is not None and not a.seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 1,2,3")
    if a.seeds and (cfg.out or len(set(a.seeds)) != len(a.seeds)):
        raise UserError("--seeds takes distinct seeds and names each run folder itself (drop --out)")
    configs = [dataclasses.replace(cfg, seed=s) for s in a.seeds] if a.seeds else [cfg]
    summaries = [engine.run(c, progress=not a.no_progress) for c in configs]
    if not summaries[0]:  # a non-zero torchrun rank: rank 0 reports
        return 0
    for suite, table in build_tables(summaries).items():
        print(f"\n{suite}\n{render(table, 'md')}")
    for c in configs:  # the table above is the aggregate over seeds (mean ± std); `table` rebuilds it any time
        print(f"run folder: {c.out or default_out(c)}")
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    from .data.layouts import LAYOUTS
    from .data.suites import SUITES
    from .methods import METHODS
    from .stream import SETTINGS
    from .teachers import TEACHERS

    argparse.ArgumentParser(prog="run_bench.py list", description="List suites, methods, teachers, settings.").parse_args(argv)
    print("suites (test-set size per split; where the test set comes from):")
    for e in SUITES:
        spec = e.builder
        print(f"  {e.name:16s} {spec.size_text():>34s}  {e.help}")
        if spec.reference:
            print(f"  {'':16s} {'':34s}  test set: {spec.reference}")
        if spec.hub:
            held = (f"holds another test split ({spec.hub.test_split}): its own split name" if spec.hub.test_split
                    else "held to the same test set (its size is checked)")
            print(f"  {'':16s} {'':34s}  --source hub: {spec.hub.id}, {held}")
    for title, entries in (("methods", METHODS), ("teachers", TEACHERS), ("layouts", LAYOUTS)):
        print(f"{title}:")
        for e in entries:
            print(f"  {e.name:16s} {e.help}")
            if e.accepts:
                print(f"  {'':16s}   teachers: {e.accepts}")
    print("settings:")
    for e in SETTINGS:
        print(f"  {e.name:28s} {e.help}")
    return 0


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def cmd_table(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="run_bench.py table", description="Comparison tables of finished runs.")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    p.add_argument("--published", action="store_true", help="add published numbers (results/published)")
    p.add_argument("--metric", default="top1")
    p.add_argument("--at-step", type=int, help="accuracy after N test-time steps (runs made with --record-steps)")
    a = p.parse_args(argv)
    from .report import table_command  # pandas: after --help

    print(table_command(a.runs, a.format, a.published, a.metric, a.at_step, warn=_warn))
    return 0


def cmd_plot(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="run_bench.py plot", description="Plots (PNG + SVG) of finished runs.")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="results/plots")
    a = p.parse_args(argv)
    from .report import plot_command  # pandas, matplotlib: after --help

    for path in plot_command(a.runs, a.out, warn=_warn):
        print(path)
    return 0


def cmd_check(argv: Sequence[str]) -> int:
    from .report import check_command

    p = argparse.ArgumentParser(prog="run_bench.py check",
                                description="Accuracy gate: exit 1 when a split falls below reference - tolerance.")
    p.add_argument("run")
    p.add_argument("--reference", required=True, help="reference JSON (e.g. results/ci/reference.json)")
    p.add_argument("--tolerance", type=float, help="points (default: the reference file's)")
    a = p.parse_args(argv)
    ok, text = check_command(a.run, a.reference, a.tolerance)
    print(text)
    return 0 if ok else 1


def cmd_metrics(argv: Sequence[str]) -> int:
    from .report.recompute import METRICS, metrics_command

    p = argparse.ArgumentParser(prog="run_bench.py metrics",
                                description="Recompute metrics from saved logits (runs made with --save-logits); "
                                            "writes metrics.json into each run folder, which `table --metric` reads.")
    p.add_argument("runs", nargs="+")
    p.add_argument("--metric", type=_csv(), default=list(METRICS), help=f"comma list of {', '.join(METRICS)}")
    a = p.parse_args(argv)
    print(metrics_command(a.runs, tuple(a.metric)))
    return 0


def cmd_sweep(argv: Sequence[str]) -> int:
    from .sweep import sweep_command

    p = argparse.ArgumentParser(prog="run_bench.py sweep",
                                description="Run a grid of configurations from a YAML file, one run folder each "
                                            "under results/sweeps/<name>/; rerunning skips finished runs.")
    p.add_argument("file", help="sweep YAML: name, base, grid, overrides, exclude")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their status and cost; run nothing")
    p.add_argument("--shard", metavar="I/N", help="run every N-th run from the I-th (0-based); default: the SLURM "
                                                  "job array task (SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT)")
    p.add_argument("--out", help="sweep folder (default: results/sweeps/<name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a RunConfig field for every run, VALUE as YAML (e.g. device=cuda, weights=w.th)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    return sweep_command(a.file, a.dry_run, a.shard, a.out, a.set, not a.no_progress)


def cmd_reproduce(argv: Sequence[str]) -> int:
    from .sweep import reproduce_command, sweep_names

    p = argparse.ArgumentParser(prog="run_bench.py reproduce",
                                description="Regenerate a paper table: run the named sweep's unfinished runs, then "
                                            "print measured and published rows and their difference.")
    p.add_argument("table", help=f"one of: {', '.join(sweep_names())}; or a sweep file")
    p.add_argument("--data-root", help="a folder holding one folder per suite (e.g. imagenet/, imagenet-a/); for a "
                                       "one-suite table, that suite's folder itself")
    p.add_argument("--limit", type=int, help="N evenly spread samples per split (quick check; marked in the table)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their status and cost; run nothing")
    p.add_argument("--out", help="sweep folder (default: results/sweeps/<table>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a RunConfig field for every run, VALUE as YAML (e.g. device=cuda, weights=w.th)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    return reproduce_command(a.table, a.data_root, a.limit, a.dry_run, a.out, a.set, not a.no_progress)


def cmd_islands(argv: Sequence[str]) -> int:
    from .device import pick_device
    from .islands import islands_command
    from .teachers.ready import ready_teacher

    p = argparse.ArgumentParser(prog="run_bench.py islands",
                                description="Islands of agreement (APM paper, Fig. 3/5): train one APM student on an "
                                            "image and save the input beside the student's feature grid, coloured by a "
                                            "3-component PCA, at a few step counts.")
    p.add_argument("--image", required=True, help="an image file")
    p.add_argument("--teacher", default=RunConfig().teacher, help="teacher spec, as for a run (default: %(default)s)")
    p.add_argument("--weights", help="local checkpoint for the teacher")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--at", type=_csv(int), help="step counts to show (default: 0, steps/10, steps/3, steps)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="APM option, e.g. preset=paper, lr=3e-4, dense_weight=1")
    p.add_argument("--seed", type=int, default=0, help="the student's initialisation")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--panel", type=int, default=224, help="pixel side of each panel")
    p.add_argument("--out", default="islands.png")
    a = p.parse_args(argv)
    given = parse_opts(a.opt) | ({"steps": a.steps} if a.steps else {})
    device = pick_device(a.device)
    teacher = ready_teacher(a.teacher, device, weights=a.weights)
    print(islands_command(a.image, teacher, given, a.at, a.seed, device, a.out, a.panel))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "table": cmd_table, "plot": cmd_plot, "check": cmd_check, "metrics": cmd_metrics,
            "sweep": cmd_sweep, "reproduce": cmd_reproduce, "islands": cmd_islands}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else cmd_run(argv)
    except (UserError, UnknownNameError) as exc:  # bad input: one line; anything else is a bug and shows its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: predictions so far are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

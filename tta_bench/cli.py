"""Command line: ``run_bench.py [run options]`` runs a benchmark; subcommands read or compare run folders.

User errors (bad names, missing folders, wrong layouts) print one message and exit 2, no traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from .choices import DEVICES, TABLE_FORMATS
from .config import EXECUTION, GROUPS, STREAM, WHAT, RunConfig, convert, hints, parse_key_values, spelling
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
subcommands: list, table, plot, check, compare, metrics, sweep, reproduce, islands (each has --help)"""


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as every other user error: one line, exit 2 (``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def _csv(cast: Callable = str) -> Callable[[str], list]:
    return lambda text: [cast(t.strip()) for t in text.split(",") if t.strip()]


def _typed(hint: object, flag: str) -> Callable[[str], object]:
    """argparse ``type=``: the text converted as every other source of values is (config.convert)."""
    def parse(text: str) -> object:
        return convert(hint, text, flag)

    parse.__name__ = flag
    return parse


def _choices(hint: object) -> tuple[str, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def _metavar(flag: str, choices: tuple[str, ...] | None) -> str | None:
    """{a,b,c} for a short closed set (argparse's own), else the flag in capitals."""
    return None if choices and len(choices) <= 4 else flag.lstrip("-").replace("-", "_").upper()


def _bare(hint: object) -> object:
    """``X | None`` -> X: the command line has no None (an option left out keeps its default)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _add_field(group: argparse._ArgumentGroup, f: dataclasses.Field) -> None:
    """The command-line flags of one RunConfig field, from its annotation and metadata."""
    meta, hint = f.metadata, _bare(hints()[f.name])
    if meta["keys"]:  # a mapping of options: KEY=VALUE items, and a flag for each named key
        for key in meta["keys"]:
            choices = _choices(key.type)
            group.add_argument(key.spelling, dest=f"{f.name}.{key.key}", type=_typed(key.type, key.spelling),
                               choices=choices, metavar=_metavar(key.spelling, choices), help=key.help)
        group.add_argument(spelling(f), dest=f"{f.name}.items", action="append", default=[], metavar=meta["metavar"],
                           help=meta["help"])
        return
    default = None if f.default is dataclasses.MISSING else f.default
    if hint is bool:
        group.add_argument(spelling(f), dest=f.name, default=default, action=argparse.BooleanOptionalAction,
                           help=meta["help"])
        return
    choices = _choices(hint)
    for flag, text in ((spelling(f), meta["help"]), *meta["aliases"]):
        group.add_argument(flag, dest=f.name, default=default, type=_typed(hint, flag), choices=choices,
                           metavar=meta["metavar"] or _metavar(flag, choices), help=text)


def run_parser() -> Parser:
    """The run command line: one group of flags per RunConfig field group, each field's flags declared from the
    field (config.option), plus the options of the command itself (--config, --seeds, --dry-run, --no-progress)."""
    p = Parser(prog="run_bench.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DEMO_HINT,
               description="Evaluate a test-time adaptation / training method on a distribution-shift suite. "
                           "Writes per-sample predictions, summary.json (accuracy per split, provenance, cost) and "
                           "prints a Markdown table. Rerunning the same command resumes an interrupted run.")
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    groups[WHAT].add_argument("--config", metavar="FILE",
                              help="a run file (YAML of RunConfig fields, as a sweep's cells; examples/run.yaml) or a "
                                   "run folder's config.json (reruns that run exactly); options given here override it")
    for f in dataclasses.fields(RunConfig):
        _add_field(groups[f.metadata["group"]], f)
    groups[STREAM].add_argument("--seeds", type=_csv(int),
                                help="comma list: one run folder per seed, then mean ± std")
    groups[EXECUTION].add_argument("--dry-run", action="store_true",
                                   help="check the configuration, print the stream plan and exit; writes nothing")
    groups[EXECUTION].add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_opts(items: Sequence[str]) -> dict[str, object]:
    """``--opt KEY=VALUE`` items -> method options (values stay strings; the method converts them)."""
    return parse_key_values(list(items), "--opt")


def run_config(argv: Sequence[str]) -> tuple[RunConfig, argparse.Namespace]:
    """The configuration a run command line asks for, built once. With ``--config FILE`` the file's fields become
    the parser's defaults (the first pass only finds the file), so options typed here win and method options merge
    key by key: ``--lr`` on top of a file's ``method_options: {steps: 10}`` keeps both."""
    parser = run_parser()
    args = parser.parse_args(argv)
    if args.config:
        from .runconfig_file import read_run_file

        parser.set_defaults(**read_run_file(args.config))
        args = parser.parse_args(argv)
    given = vars(args)
    values = {}
    for f in dataclasses.fields(RunConfig):
        if f.metadata["keys"]:  # the file's mapping, then KEY=VALUE items, then each key's own flag
            named = {k.key: given[f"{f.name}.{k.key}"] for k in f.metadata["keys"]}
            values[f.name] = {**(given.get(f.name) or {}), **parse_opts(given[f"{f.name}.items"]),
                              **{k: v for k, v in named.items() if v is not None}}
        else:
            values[f.name] = given[f.name]
    return RunConfig.build(values, "the command line"), args


def _per_seed(cfg: RunConfig, seeds: list[int] | None) -> list[RunConfig]:
    if seeds is None:
        return [cfg]
    if not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 1,2,3")
    if cfg.out or len(set(seeds)) != len(seeds):
        raise UserError("--seeds takes distinct seeds and names each run folder itself (drop --out)")
    return [dataclasses.replace(cfg, seed=s) for s in seeds]


def cmd_run(argv: Sequence[str]) -> int:
    cfg, a = run_config(argv)
    configs = _per_seed(cfg, a.seeds)
    from . import engine  # torch: only once there is something to run (--help stays fast)
    from .records import default_out
    from .preflight import preflight
    from .report.tables import build_tables, render

    for c in configs:  # everything checked before anything is written, --dry-run or not
        preflight(c)
    if a.dry_run:
        print(engine.plan(engine.prepare(cfg)))
        return 0
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

    Parser(prog="run_bench.py list", description="List suites, methods, teachers, settings.").parse_args(argv)
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
    p = Parser(prog="run_bench.py table", description="Comparison tables of finished runs.")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--format", choices=TABLE_FORMATS, default="md")
    p.add_argument("--published", action="store_true", help="add published numbers (results/published)")
    p.add_argument("--metric", default="top1")
    p.add_argument("--at-step", type=int, help="accuracy after N test-time steps (runs made with --record-steps)")
    p.add_argument("--ci", action="store_true",
                   help="a 95%% interval on every value (Wilson for one split; bootstrap for means, seeds and online "
                        "methods), from the runs' per-sample predictions")
    p.add_argument("--baseline", metavar="METHOD",
                   help="add each row's paired difference to the row of METHOD on the same samples: interval, "
                        "McNemar's exact test, † where significant")
    p.add_argument("--resampling", choices=("auto", "samples", "batches"), default="auto",
                   help="bootstrap units: samples, or the stream's batches (auto: batches for online methods)")
    a = p.parse_args(argv)
    from .report import table_command  # pandas: after --help

    print(table_command(a.runs, a.format, a.published, a.metric, a.at_step, warn=_warn, ci=a.ci, baseline=a.baseline,
                        resampling=a.resampling))
    return 0


def cmd_plot(argv: Sequence[str]) -> int:
    p = Parser(prog="run_bench.py plot", description="Plots (PNG + SVG) of finished runs.")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="results/plots", help="folder for the figures (default: %(default)s)")
    p.add_argument("--resampling", choices=("auto", "samples", "batches"), default="auto",
                   help="error bars: 95%% intervals from the per-sample predictions, resampled as `table --ci`")
    a = p.parse_args(argv)
    from .report import plot_command  # pandas, matplotlib: after --help

    for path in plot_command(a.runs, a.out, warn=_warn, resampling=a.resampling):
        print(path)
    return 0


def cmd_check(argv: Sequence[str]) -> int:
    from .report import check_command

    p = Parser(prog="run_bench.py check",
                                description="Accuracy gate: exit 1 when a split falls below reference - tolerance.")
    p.add_argument("run")
    p.add_argument("--reference", required=True, help="reference JSON (e.g. results/ci/reference.json)")
    p.add_argument("--tolerance", type=float, help="points, a finite number >= 0 (default: the reference file's)")
    a = p.parse_args(argv)
    ok, text = check_command(a.run, a.reference, a.tolerance)
    print(text)
    return 0 if ok else 1


def cmd_metrics(argv: Sequence[str]) -> int:
    from .report.recompute import LOGIT_METRICS, METRICS, metrics_command

    p = Parser(prog="run_bench.py metrics",
               description="Recompute metrics of finished runs: top-1, top-5 and per-class from the predictions, "
                           "ECE, NLL and Brier from saved logits (runs made with --save-logits); writes metrics.json "
                           "into each run folder, which `table --metric` reads.")
    p.add_argument("runs", nargs="+")
    p.add_argument("--metric", type=_csv(), help=f"comma list of {', '.join(METRICS)} (default: all a run can give; "
                                                 f"{', '.join(LOGIT_METRICS)} need saved logits)")
    a = p.parse_args(argv)
    print(metrics_command(a.runs, tuple(a.metric) if a.metric else None))
    return 0


def cmd_compare(argv: Sequence[str]) -> int:
    p = Parser(prog="run_bench.py compare",
               description="Paired comparison of two runs on the same samples: per split and over all, each "
                           "accuracy with its 95%% interval, the difference with its paired bootstrap interval, "
                           "McNemar's exact p, and the samples only one got right.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--metric", choices=("top1", "top5", "error"), default="top1")
    p.add_argument("--resampling", choices=("auto", "samples", "batches"), default="auto",
                   help="bootstrap units: samples, or the stream's batches (auto: batches where a run adapts online)")
    a = p.parse_args(argv)
    from .report.compare import compare_command  # numpy, scipy: after --help

    print(compare_command(a.run_a, a.run_b, a.metric, a.resampling), end="")
    return 0


def cmd_sweep(argv: Sequence[str]) -> int:
    from .sweep import sweep_command

    p = Parser(prog="run_bench.py sweep",
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

    p = Parser(prog="run_bench.py reproduce",
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
    from .islands import islands_command, read_image
    from .teachers.ready import ready_teacher

    p = Parser(prog="run_bench.py islands",
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
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--panel", type=int, default=224, help="pixel side of each panel")
    p.add_argument("--out", default="results/plots/islands.png", help="PNG to write (default: %(default)s)")
    a = p.parse_args(argv)
    given = parse_opts(a.opt) | ({"steps": a.steps} if a.steps else {})
    image = read_image(a.image)  # before the teacher is built (a download, perhaps)
    device = pick_device(a.device)
    teacher = ready_teacher(a.teacher, device, weights=a.weights)
    print(islands_command(image, Path(a.image).name, teacher, given, a.at, a.seed, device, a.out, a.panel))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "table": cmd_table, "plot": cmd_plot, "check": cmd_check,
            "compare": cmd_compare, "metrics": cmd_metrics,
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

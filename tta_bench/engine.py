"""The one loop every method runs inside.

suite + teacher + method + stream meet here and nowhere else: the engine builds the stream, loads batches with
DataLoader workers, resets the method where the setting allows, calls ``predict``, and appends records to the
run folder as it goes (so a rerun of the same command resumes), then writes the summary.
"""
from __future__ import annotations

import functools
import hashlib
import os
import json
import re
import resource
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor
from tqdm import tqdm

from . import distributed, outputs
from .choices import DEVICES
from .config import RunConfig
from .data.build import SuiteData, content_fingerprints, load_source_data, load_suite
from .data.images import CorruptImageError
from .data.labels.prompts import class_prompts, file_hash
from .data.sources import sample_seed
from .eta import Eta
from .errors import UserError
from .methods import METHODS, build_method
from .methods.base import Batch, Method
from .methods.common import small_batch_note
from .methods.defaults import Resolved, resolve as resolve_defaults
from .provenance import provenance, weights_sha256
from .runlog import BatchLog, open_log
from .records import RunFolder, file_sha256
from .stream import Stream, build_stream, default_dirichlet, required_severities
from .summary import git_commit, summarize, versions
from .teachers import build_teacher, memory_format
from .vocabulary import SUMMARY, record_key

RUNS_DIR = Path("results/runs")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name not in DEVICES:
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def resolve_precision(asked: str, method: type[Method] | Method, device: torch.device) -> str:
    """``auto``: the method's own precision (its reference code's) on CUDA, float32 on the CPU (bf16 is slow there)."""
    if asked != "auto":
        return asked
    return method.precision if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str = "bf16") -> ContextManager:
    """The region every ``predict`` runs in: bf16 autocast, or float32 (on CUDA without TF32, which cuDNN uses for
    convolutions by default: its 10-bit mantissa would make "fp32" a third precision)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return ExactFloat32() if device.type == "cuda" else nullcontext()


class ExactFloat32:
    """TF32 off for matrix products and convolutions inside the block (re-enterable: the engine enters it per batch)."""

    def __enter__(self) -> None:
        self.flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.flags


def default_out(cfg: RunConfig) -> Path:
    """Deterministic, so that rerunning the same command resumes the same folder."""
    digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:8]
    teacher = re.sub(r"[^A-Za-z0-9.]+", "-", cfg.teacher).strip("-")
    return RUNS_DIR / f"{cfg.suite}-{cfg.method}-{teacher}-seed{cfg.seed}-{digest}"


class StreamDataset(Dataset):
    """Stream position -> (position, image tensor, ok, full image): a corrupt file is reported instead of raised when
    the run skips errors; the full decoded image (uint8 (3, H, W), before the teacher's transform) comes along only
    where ``raw`` is set (methods with ``raw_images``, see ``Batch.raw``)."""

    def __init__(self, suite: SuiteData, stream: Stream, transform, skip_errors: bool, raw: bool = False) -> None:
        self.suite, self.stream, self.transform, self.skip_errors, self.raw = suite, stream, transform, skip_errors, raw

    def __len__(self) -> int:
        return len(self.stream.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str, torch.Tensor | None]:
        item = self.stream.items[i]
        try:
            image = self.suite.splits[item.split].source.load(item.pos)
        except CorruptImageError as exc:
            if not self.skip_errors:
                raise
            return i, None, str(exc), None
        return i, self.transform(image), "", pil_to_tensor(image) if self.raw else None


def _collate(rows: list[tuple[int, torch.Tensor | None, str, torch.Tensor | None]]
             ) -> tuple[list[int], torch.Tensor | None, list[str], list[torch.Tensor] | None]:
    ok = [r for r in rows if r[1] is not None]
    images = torch.stack([r[1] for r in ok]) if ok else None
    raw = [r[3] for r in ok] if ok and ok[0][3] is not None else None
    return [r[0] for r in rows], images, [r[2] for r in rows], raw


@dataclass
class Prepared:
    cfg: RunConfig
    suite: SuiteData
    stream: Stream
    out: Path
    defaults: Resolved  # the batch size and method options after the suite family's defaults
    prompts: str  # the CLIP prompt spec: the user's, else the method's
    notes: list[str]  # what a reader of the results must know (shown at start, kept in the summary)
    source_data: dict[str, Any] | None = None  # the clean images a method used before the stream
    teacher_sha256: str | None = None  # the teacher's weights as built, before any adaptation
    memory_format: str = memory_format.CONTIGUOUS  # the teacher's layout (channels_last for CNNs on the CPU)

    @functools.cached_property
    def stream_hash(self) -> str:
        """The ordered samples' fingerprint (inputs.json and the summary), computed once: a CCC stream is long."""
        return self.stream.hash(self.suite.splits)


def prepare(cfg: RunConfig) -> Prepared:
    """Everything a run needs that does not touch a model: the data, its self-check and the stream."""
    if cfg.method not in METHODS:
        METHODS.get(cfg.method)  # raises the unknown-name error with the choices
    cfg.validate()
    severities = required_severities(cfg.setting)
    if severities and cfg.severities not in (None, severities):
        raise UserError(f"setting {cfg.setting} runs severities 1-5; drop --severities")
    data_cfg = RunConfig.from_dict({**cfg.to_dict(), "severities": severities or cfg.severities})
    suite = load_suite(data_cfg)
    dirichlet = default_dirichlet(suite.spec.family) if cfg.dirichlet is None else cfg.dirichlet
    stream = build_stream(suite.splits, cfg.setting, cfg.seed, dirichlet, cfg.sorter)
    defaults = resolve_defaults(cfg.method, suite.spec.family, cfg.batch_size, cfg.method_options, suite.spec.name)
    notes = [_one_batch_note(cfg.method, stream, defaults.batch_size),
             small_batch_note(METHODS.get(cfg.method), defaults.batch_size)]
    prompts = prompt_spec(cfg)
    return Prepared(cfg, suite, stream, Path(cfg.out) if cfg.out else default_out(cfg), defaults, prompts,
                    [n for n in notes if n])


def _one_batch_note(method: str, stream: Stream, batch_size: int) -> str | None:
    """An online method whose every reset segment fits in one batch predicts each segment before its first update:
    it reduces to BN adaptation (seen: TENT = BN adaptation exactly on a 100-sample-per-domain CIFAR-10-C run)."""
    if METHODS.get(method).episodic or METHODS.get(method).per_sample_updates:
        return None
    starts = sorted(stream.resets) + [len(stream.items)]
    longest = max(b - a for a, b in zip(starts[:-1], starts[1:]))
    if batch_size < longest:
        return None
    return (f"one-batch segments: batch size {batch_size} >= the longest reset segment ({longest} samples), so "
            f"{method} predicts every sample before any update of its segment")


def plan(p: Prepared) -> str:
    lines = [f"suite {p.suite.spec.name} ({p.suite.source}, {p.suite.subset}{', partial' if p.suite.partial else ''}), "
             f"setting {p.stream.setting}, {len(p.stream.items):,} samples, {len(p.stream.resets)} reset point(s), "
             f"batch size {p.defaults.batch_size}"]
    for s in p.suite.splits:
        lines.append(f"  {s.name:24s} {len(s.source):>8,d} samples")
    lines += [f"  note: {n}" for n in p.suite.notes]
    if p.defaults.record["applied"]:
        lines.append(f"  {p.cfg.method} defaults for {p.defaults.record['family']} suites: "
                     + ", ".join(f"{k}={v}" for k, v in p.defaults.record["applied"].items()))
    lines += [f"  WARNING: {n}" for n in p.notes]
    lines.append(f"run folder: {p.out}")
    return "\n".join(lines)


def run(cfg: RunConfig, progress: bool = True, log=print) -> dict[str, Any]:
    """Run (or resume) one configuration; under torchrun every rank calls this and rank 0 returns the summary.
    Rank 0 holds the run folder's lock from start to end."""
    dist = distributed.from_env()
    p = prepare(cfg)
    cfg = p.cfg = outputs.merged(outputs.stored_config(p.out), cfg)  # the folder keeps the outputs it holds
    prompts = class_prompts(p.prompts, p.suite.space, p.suite.classes)  # validated before any model work
    folder = RunFolder.open(p.out, cfg) if dist.main else None
    try:
        return _run(p, folder, prompts, dist, progress, log)
    finally:
        if folder:
            folder.release()
        distributed.shutdown(dist)


def inputs_of(p: Prepared, precision: str) -> dict[str, Any]:
    """Fingerprints of what determines the predictions beyond the configuration: the files it names (weights,
    head, prompt file) by content, the stream by its ordered sample keys, what each split's samples hold, and the
    arithmetic."""
    cfg = p.cfg
    return {"stream": p.stream_hash, "data": content_fingerprints(p.suite.splits), "precision": precision,
            "weights": file_sha256(cfg.weights) if cfg.weights else None,
            "head": file_sha256(cfg.head) if cfg.head else None, "prompts": file_hash(p.prompts)}


def prompt_spec(cfg: RunConfig) -> str:
    """The CLIP prompt spec a run uses: the user's, else its method's reference prompts."""
    return cfg.prompts or METHODS.get(cfg.method).prompts


def _run(p: Prepared, folder: RunFolder | None, prompts, dist: distributed.Dist, progress: bool, log) -> dict[str, Any]:
    cfg = p.cfg
    device = pick_device(cfg.device, dist.local_rank)
    precision = resolve_precision(cfg.precision, METHODS.get(cfg.method), device)
    if folder:
        folder.check_inputs(inputs_of(p, precision), cfg.overwrite)
        if file_hash(cfg.prompts):
            shutil.copyfile(cfg.prompts, folder.path / f"prompts{Path(cfg.prompts).suffix}")
    distributed.barrier_init(dist, cfg.device)
    folder = folder or RunFolder(p.out)
    records = folder.records()
    if ((folder.path / SUMMARY).exists() and len(records) == len(p.stream.items)
            and not outputs.lacking(records, cfg, outputs.saved_logit_ids(folder.path))):
        log(f"{folder.path} is complete; reusing its summary")
        return json.loads((folder.path / SUMMARY).read_text())
    if device.type == "cpu" and cfg.num_workers:  # leave the decoding workers their cores: oversubscribed
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.num_workers))  # BLAS threads stall badly
    teacher = build_teacher(cfg.teacher, cfg.weights, cfg.head, len(p.suite.space))
    if cfg.prompts is not None and not teacher.uses_prompts:
        raise UserError(f"--prompts {cfg.prompts} builds a CLIP text head; teacher {teacher.name} classifies with its "
                        "own head and would ignore it")
    p.teacher_sha256 = weights_sha256(teacher)
    teacher = teacher.to(device).eval().requires_grad_(False)
    p.memory_format = memory_format.apply(teacher, device)
    teacher.set_classes(p.suite.space, p.suite.classes, prompts)
    method = build_method(cfg.method, teacher, p.defaults.options, device)
    steps = getattr(method.options, "steps", 0)
    if cfg.record_steps and max(cfg.record_steps) > steps:
        raise UserError(f"--record-steps {max(cfg.record_steps)} is beyond the {steps} steps {cfg.method} takes")
    if dist.main:
        log(plan(p))
    p.source_data = _prepare_source(method, p, device, precision, log if dist.main else (lambda *_: None))
    return _loop(p, folder, method, device, precision, dist, progress and dist.main, log)


def _loop(p: Prepared, folder: RunFolder, method: Method, device: torch.device, precision: str,
          dist: distributed.Dist, progress: bool, log) -> dict[str, Any]:
    cfg, suite, stream = p.cfg, p.suite, p.stream
    previous = {record_key(r): r for r in folder.records()}
    # records lacking an asked output (--save-logits, --record-steps added to a run) are computed again
    done = set(previous) - outputs.lacking(previous.values(), cfg, outputs.saved_logit_ids(folder.path))
    key = lambda i: (suite.splits[stream.items[i].split].name,  # noqa: E731
                     suite.splits[stream.items[i].split].source.ids[stream.items[i].pos], stream.items[i].visit)
    batches = _batches_of_rank(stream, p.defaults.batch_size, method, dist)
    if method.episodic:  # per-sample results do not depend on what came before: skip finished samples
        batches = [b for b in ([i for i in b if key(i) not in done] for b in batches) if b]
    else:  # online state depends on the whole segment: replay segments that are not finished
        batches = _unfinished_segments(batches, stream, key, done)
    writer = folder.writer(dist.rank, dist.world, cfg.save_logits)
    transform = method.teacher.transform_for(suite.spec.stored)  # the suite's stored geometry honoured
    dataset = StreamDataset(suite, stream, transform, cfg.on_error == "skip", method.raw_images)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers, collate_fn=_collate,
                        pin_memory=device.type == "cuda")
    amp = autocast(device, precision)
    n_todo = sum(len(b) for b in batches)
    steps_each = getattr(method.options, "steps", 0)
    redo = len(set(previous) - done)
    if dist.main:
        log(f"{cfg.method}: {n_todo:,} samples to run on this rank ({len(done):,} already done"
            + (f"; {redo:,} again for outputs they lack" if redo else "") + ")"
            + (f", x {steps_each} adaptation steps each" if steps_each else ""))
    bar = tqdm(total=n_todo, disable=not progress, desc=f"{cfg.suite}/{cfg.method}", unit="img", file=sys.stderr,
               dynamic_ncols=True)
    cost = folder.cost_log(dist.rank)
    runlog = open_log(cfg.log if dist.main else None, folder.path, p.out.name, cfg.to_dict(), log)
    correct = seen = changed = 0
    start = last = time.perf_counter()
    eta = Eta(n_todo)
    try:
        for positions, images, errors, raw in loader:
            if positions[0] in stream.resets:
                method.reset()
            kept = [i for i, e in zip(positions, errors) if not e]
            records, logits, forwards, steps, loss = [], None, 0, 0, None
            if images is not None:
                images = memory_format.batch(images.to(device, non_blocking=True), p.memory_format)
                batch = Batch(images, [sample_seed(cfg.seed, *key(i)[:2]) for i in kept],
                              tuple(cfg.record_steps or ()), raw)
                with amp:
                    out = _predict(method, batch)
                logits, forwards, steps, loss = out.logits.float(), out.teacher_forwards, out.adaptation_steps, out.loss
                if cfg.save_logits:  # predictions from the saved float16 values, so they recompute exactly
                    logits = logits.half().float()
                # stable order: ties go to the lower class index, as `metrics` recomputes it from saved logits
                top5 = logits.sort(dim=1, descending=True, stable=True).indices[:, :5].cpu().tolist()
                extras = out.extras or [{} for _ in kept]
                diverged = (~logits.isfinite().all(1)).tolist()  # a NaN/inf update: no prediction to count
                records = [outputs.mark(_record(suite, stream, i, t5, extra, bad), cfg)
                           for i, t5, extra, bad in zip(kept, top5, extras, diverged)]
            fresh = [k for k, r in enumerate(records) if record_key(r) not in done]
            errs = [_error_record(suite, stream, i, e) for i, e in zip(positions, errors) if e and key(i) not in done]
            now = time.perf_counter()
            writer.commit([records[k] for k in fresh], logits[fresh].cpu().numpy() if logits is not None else None,
                          errs, cost, seconds=now - last, samples=len(kept), teacher_forwards=forwards,
                          adaptation_steps=steps)
            for r in [records[k] for k in fresh] + errs:
                done.add(record_key(r))
                changed += r["pred"] != previous.get(record_key(r), r)["pred"]
                seen += r["status"] != "error"
                correct += r["correct"]
            runlog.batch(BatchLog.of(len(done), records, loss, now - last, forwards, steps, correct, seen))
            last = now
            bar.update(len(positions))
            bar.set_postfix(top1=f"{100 * correct / max(seen, 1):.1f}%")
            if (estimate := eta.update(len(positions))) and dist.main:
                log(estimate)
    except CorruptImageError as exc:
        raise UserError(f"{_last_line(exc)}; the run stopped, predictions so far are kept in {folder.path}: rerun "
                        "with --on-error skip to skip and count such files") from None
    finally:
        bar.close()
        runlog.close()
    distributed.barrier(dist)
    if not dist.main:
        return {}
    order = {key(i): i for i in range(len(stream.items))}
    records = folder.merge(order, suite.classes)
    meta = _meta(p, method, folder.total_cost(), device, precision, dist)
    meta["cost"]["eta"] = eta.record()
    if redo and (folder.path / SUMMARY).exists():  # outputs added to a finished run: its cost stays the run's
        meta["cost"] = {**json.loads((folder.path / SUMMARY).read_text()).get("cost", {}),
                        "outputs_added": {"samples": n_todo, "seconds": time.perf_counter() - start,
                                          "changed_predictions": changed}}
    if changed:
        log(f"warning: {changed} recomputed prediction(s) differ from the recorded ones (another device or "
            "library version?); the new ones are kept")
    summary = summarize(records, [s.name for s in suite.splits], meta)
    folder.write_summary(summary.to_dict())
    return summary.to_dict()


def _prepare_source(method: Method, p: Prepared, device: torch.device, precision: str, log) -> dict[str, Any] | None:
    """The one hook for source statistics: load the clean images the method asks for and let it digest them."""
    n = method.source_samples()
    if not n:
        return None
    data = load_source_data(p.cfg, n)
    log(f"{method.name}: {len(data.source)} clean source images from {data.origin}")
    images = _SourceImages(data.source, method.teacher.transform)
    loader = DataLoader(images, batch_size=p.defaults.batch_size, num_workers=p.cfg.num_workers)
    with autocast(device, precision):
        method.prepare_source(batch.to(device) for batch in loader)
    return {"n": len(data.source), "origin": data.origin, "ids_sha256": hashlib.sha256(
        "\n".join(data.source.ids).encode()).hexdigest()}


class _SourceImages(Dataset):
    def __init__(self, source, transform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.source.load(i))


def _predict(method: Method, batch: Batch):
    """Out of memory: let the method shrink its working set (APM's query chunk) and retry, else say so."""
    while True:
        try:
            return method.predict(batch)
        except torch.OutOfMemoryError:
            if not method.on_out_of_memory():
                raise UserError(f"{method.name} ran out of memory on a batch of {len(batch.images)}: lower "
                                "--batch-size (or the method's chunk size); finished predictions are kept") from None


def _batches_of_rank(stream: Stream, batch_size: int, method: Method, dist: distributed.Dist) -> list[list[int]]:
    """Episodic methods shard samples round-robin; online methods can only shard whole reset segments."""
    if dist.world == 1:
        return stream.batches(batch_size)
    if method.episodic:
        mine = Stream([stream.items[i] for i in range(dist.rank, len(stream.items), dist.world)], {0}, stream.setting)
        positions = list(range(dist.rank, len(stream.items), dist.world))
        return [[positions[j] for j in b] for b in mine.batches(batch_size)]
    if len(stream.resets) < 2:
        raise UserError(f"{method.name} adapts online over one sequential stream (setting {stream.setting}): it "
                        "cannot be split over processes; run it without torchrun")
    starts = sorted(stream.resets) + [len(stream.items)]
    out = []
    for k, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        if k % dist.world == dist.rank:
            seg = Stream(stream.items[a:b], {0}, stream.setting)
            out += [[a + j for j in batch] for batch in seg.batches(batch_size)]
    return out


def _unfinished_segments(batches: list[list[int]], stream: Stream, key, done) -> list[list[int]]:
    out, segment = [], []
    for b in batches + [[len(stream.items)]]:
        if b[0] in stream.resets or b[0] == len(stream.items):
            if any(key(i) not in done for batch in segment for i in batch):
                out.extend(segment)
            segment = []
        segment.append(b)
    return out


def _record(suite: SuiteData, stream: Stream, i: int, top5: list[int], extra: dict[str, Any],
            diverged: bool) -> dict[str, Any]:
    """A prediction record; the method's extras (in label-space terms, its own business) are merged as they are."""
    item = stream.items[i]
    split = suite.splits[item.split]
    classes = suite.classes
    label = split.source.labels[item.pos]
    pred = classes[top5[0]]
    record = {"split": split.name, "id": split.source.ids[item.pos], "label": label, "pred": pred,
              "top5": [classes[j] for j in top5], "correct": pred == label, "status": "ok", **_visit(item), **extra}
    if diverged:
        record["status"] = "failed"
    if record["status"] != "ok":
        record["correct"] = False
    return record


def _last_line(exc: Exception) -> str:
    """The error itself, without the worker traceback a DataLoader wraps around it."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _error_record(suite: SuiteData, stream: Stream, i: int, message: str) -> dict[str, Any]:
    item = stream.items[i]
    split = suite.splits[item.split]
    return {"split": split.name, "id": split.source.ids[item.pos], "label": split.source.labels[item.pos],
            "pred": -1, "top5": [], "correct": False, "status": "error", "error": message, **_visit(item)}


def _visit(item) -> dict[str, int]:
    """Only replayed samples carry a visit number, so other settings' records keep their fields."""
    return {"visit": item.visit} if item.visit else {}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _meta(p: Prepared, method: Method, spent: dict[str, float], device: torch.device, precision: str,
          dist: distributed.Dist) -> dict[str, Any]:
    cfg, suite = p.cfg, p.suite
    options = method.options.__dict__.copy()
    return {
        "run_name": p.out.name, "suite": cfg.suite, "method": cfg.method, "teacher": cfg.teacher,
        "source": suite.source,
        "data": {"subset": suite.subset, "generated": suite.generated, "partial": suite.partial,
                 "n_samples": len(p.stream.items), "notes": suite.notes, "classes": len(suite.classes),
                 "root": os.path.abspath(cfg.data_root) if cfg.data_root and os.path.exists(cfg.data_root) else
                 cfg.data_root,
                 "label_space": suite.space.name, **suite.protocol(),
                 "transform": repr(method.teacher.transform_for(suite.spec.stored))},
        "setting": {"name": p.stream.setting, **p.stream.params, "stream_hash": p.stream_hash},
        "seed": cfg.seed, "config": cfg.to_dict(), "method_options": options, "defaults": p.defaults.record,
        "provenance": {**provenance(device, p.teacher_sha256 or ""), "memory_format": p.memory_format},
        "notes": p.notes, "source_data": p.source_data,
        "prompts": {"spec": p.prompts, "sha256": file_hash(p.prompts)},
        "versions": versions(), "git_commit": git_commit(), "device": str(device),
        "precision": precision, "world_size": dist.world,
        "process_group": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        # every session of the run, every rank (cost/); peak memory is this session's
        "cost": {**{k: spent[k] for k in ("seconds", "teacher_forwards", "adaptation_steps")},
                 "samples": int(spent["samples"]), "peak_memory_mb": _peak_memory_mb(device),
                 "samples_per_second": spent["samples"] / spent["seconds"] if spent["seconds"] else None,
                 "seconds_per_sample": spent["seconds"] / spent["samples"] if spent["samples"] else None,
                 "flops_per_sample": getattr(method, "flops_per_sample", None)},
    }

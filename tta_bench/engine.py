"""The one loop every method runs inside.

suite + teacher + method + stream meet here and nowhere else: ``prepare`` checks everything that can fail without a
model (so a bad option stops a run before its folder is written), ``run`` opens the run folder, builds the teacher and
the method, and ``_loop`` feeds the method its batches in stream order, resetting it where the setting allows, and
appends records as it goes (so a rerun of the same command resumes), then writes the summary.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch.utils.data import DataLoader

from . import distributed, outputs
from .config import RunConfig
from .data.build import SuiteData, content_fingerprints, load_source_data, load_suite
from .data.images import CorruptImageError
from .data.labels.prompts import class_prompts, file_hash
from .data.loader import SourceImages, StreamDataset, collate, worker_error
from .data.sources import sample_seed
from .device import autocast, peak_memory_mb, pick_device, planned_device, resolve_precision
from .errors import UserError
from .methods import METHODS, build_method
from .methods.base import Batch, Method, Output
from .methods.common import small_batch_note
from .methods.defaults import Resolved, default_prompts, resolve as resolve_defaults
from .methods.options import Options
from .progress import Progress
from .provenance import provenance
from .files import file_sha256
from .records import RunFolder, default_out
from .runlog import open_log
from .stream import Stream, batches_of_rank, limit_note, one_batch_note, required_severities, stream_for, unfinished
from .summary import cost_record, run_meta, summarize
from .teachers import memory_format
from .teachers.names import check_teacher
from .teachers.ready import ccc_calibrator, ready_teacher
from .vocabulary import SUMMARY, error_record, prediction_record, record_key

Log = Callable[[str], None]


@dataclass
class Prepared:
    cfg: RunConfig
    suite: SuiteData
    stream: Stream
    out: Path
    defaults: Resolved  # the batch size and method options after the suite family's defaults
    options: Options  # the method's options, validated
    prompts: str  # the CLIP prompt spec: the user's, else the method's
    class_prompts: list[list[str]]  # per evaluated class, the texts a CLIP head averages
    notes: list[str]  # what a reader of the results must know (shown at start, kept in the summary)
    source_data: dict[str, Any] | None = None  # the clean images a method used before the stream

    @functools.cached_property
    def stream_hash(self) -> str:
        """The ordered samples' fingerprint (inputs.json and the summary), computed once: a CCC stream is long."""
        return self.stream.hash(self.suite.splits)


def prepare(cfg: RunConfig) -> Prepared:
    """Everything a run needs that does not touch a model, and every check that can fail before the run folder is
    written: the configuration, the teacher's name and files, the data and its self-check, the stream, the method's
    options, the prompts."""
    method = METHODS.get(cfg.method)  # an unknown name: the error with the choices
    cfg.validate()
    check_teacher(cfg.teacher, cfg.weights, cfg.head)
    severities = required_severities(cfg.setting)
    if severities and cfg.severities not in (None, severities):
        raise UserError(f"setting {cfg.setting} runs severities 1-5; drop --severities")
    prompts = prompt_spec(cfg)
    suite = load_suite(dataclasses.replace(cfg, severities=severities or cfg.severities), ccc_calibrator(cfg, prompts))
    stream = stream_for(suite, cfg)
    defaults = resolve_defaults(cfg.method, suite.spec.family, cfg.batch_size, cfg.method_options, suite.spec.name)
    options = method.build_options(defaults.options, cfg.teacher, planned_device(cfg.device))
    steps = getattr(options, "steps", 0)
    if cfg.record_steps and max(cfg.record_steps) > steps:
        raise UserError(f"--record-steps {max(cfg.record_steps)} is beyond the {steps} steps {cfg.method} takes")
    online = not (method.per_sample or method.per_sample_updates)  # a per-sample update is never one batch late
    notes = [one_batch_note(stream, defaults.batch_size, cfg.method) if online else None,
             small_batch_note(method, defaults.batch_size), limit_note(cfg.setting, cfg.limit, suite)]
    return Prepared(cfg, suite, stream, Path(cfg.out) if cfg.out else default_out(cfg), defaults, options, prompts,
                    class_prompts(prompts, suite.space, suite.classes), [n for n in notes if n])


def plan(p: Prepared) -> str:
    lines = [f"suite {p.suite.spec.name} ({p.suite.source}, {p.suite.subset}{', partial' if p.suite.partial else ''}), "
             f"setting {p.stream.setting}, {len(p.stream.items):,} samples, {len(p.stream.resets)} reset point(s), "
             f"batch size {p.defaults.batch_size}"]
    lines += [f"  stream: {p.stream.explain()}"] if p.stream.explain() else []
    for s in p.suite.splits:
        lines.append(f"  {s.name:24s} {len(s.source):>8,d} samples")
    lines += [f"  note: {n}" for n in p.suite.notes]
    if p.defaults.record["applied"]:
        lines.append(f"  {p.cfg.method} defaults for {p.defaults.record['family']} suites: "
                     + ", ".join(f"{k}={v}" for k, v in p.defaults.record["applied"].items()))
    lines += [f"  WARNING: {n}" for n in p.notes]
    lines.append(f"run folder: {p.out}")
    return "\n".join(lines)


def prompt_spec(cfg: RunConfig) -> str:
    """The CLIP prompt spec a run uses: the user's, else its method's reference prompts."""
    return cfg.prompts or default_prompts(cfg.method, cfg.suite) or METHODS.get(cfg.method).prompts


def inputs_of(p: Prepared, precision: str) -> dict[str, Any]:
    """Fingerprints of what determines the predictions beyond the configuration: the files it names (weights,
    head, prompt file) by content, the stream by its ordered sample keys, what each split's samples hold, and the
    arithmetic."""
    cfg = p.cfg
    return {"stream": p.stream_hash, "data": content_fingerprints(p.suite.splits), "precision": precision,
            "weights": file_sha256(cfg.weights) if cfg.weights else None,
            "head": file_sha256(cfg.head) if cfg.head else None, "prompts": file_hash(p.prompts)}


def run(cfg: RunConfig, progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Run (or resume) one configuration; under torchrun every rank calls this and rank 0 returns the summary.
    Rank 0 holds the run folder's lock from start to end."""
    dist = distributed.from_env()
    p = prepare(cfg)
    device = pick_device(cfg.device, dist.local_rank)
    p.cfg = outputs.merged(outputs.stored_config(p.out), p.cfg)  # the folder keeps the outputs it holds
    folder = RunFolder.open(p.out, p.cfg) if dist.main else None
    try:
        return _run(p, folder, device, dist, progress, log)
    finally:
        if folder:
            folder.release()
        distributed.shutdown(dist)


def _run(p: Prepared, folder: RunFolder | None, device: torch.device, dist: distributed.Dist, progress: bool,
         log: Log) -> dict[str, Any]:
    cfg = p.cfg
    precision = resolve_precision(cfg.precision, METHODS.get(cfg.method).precision, device)
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
    teacher = ready_teacher(cfg.teacher, device, p.suite.space, p.suite.classes, p.class_prompts, cfg.weights,
                            cfg.head, layout=True, fingerprint=True)
    if cfg.prompts is not None and not teacher.uses_prompts:
        raise UserError(f"--prompts {cfg.prompts} builds a CLIP text head; teacher {teacher.name} classifies with its "
                        "own head and would ignore it")
    method = build_method(cfg.method, teacher, p.options, device)
    if dist.main:
        log(plan(p))
    p.source_data = _prepare_source(method, p, device, precision, log if dist.main else (lambda *_: None))
    return _loop(p, folder, method, device, precision, dist, progress and dist.main, log)


def _loop(p: Prepared, folder: RunFolder, method: Method, device: torch.device, precision: str,
          dist: distributed.Dist, progress: bool, log: Log) -> dict[str, Any]:
    cfg, stream = p.cfg, p.stream
    previous = {record_key(r): r for r in folder.records()}
    # records lacking an asked output (--save-logits, --record-steps added to a run) are computed again
    done = set(previous) - outputs.lacking(previous.values(), cfg, outputs.saved_logit_ids(folder.path))
    mine = batches_of_rank(stream, p.defaults.batch_size, method.per_sample, dist.rank, dist.world, cfg.method)
    batches = unfinished(mine, stream, p.suite.splits, done, method.per_sample)
    todo, redo, steps = sum(map(len, batches)), len(set(previous) - done), getattr(method.options, "steps", 0)
    if dist.main:
        log(f"{cfg.method}: {todo:,} samples to run on this rank ({len(done):,} already done"
            + (f"; {redo:,} again for outputs they lack" if redo else "") + ")"
            + (f", x {steps} adaptation steps each" if steps else ""))
    writer = folder.writer(dist.rank, dist.world, cfg.save_logits)
    runlog = open_log(cfg.log if dist.main else None, folder.path, p.out.name, cfg.to_dict(), log)
    tally = Progress(todo, f"{cfg.suite}/{cfg.method}", folder.cost_log(dist.rank), runlog, progress,
                     log if dist.main else None)
    every_batch = method.options.reset == "episodic" and not method.per_sample  # --reset episodic, online methods
    amp = autocast(device, precision)
    try:
        for positions, images, errors, raw in _loader(p, method, batches, device):
            if positions[0] in stream.resets or every_batch:
                method.reset()
            records, logits, out = _predict_batch(p, method, positions, images, errors, raw, device, amp)
            fresh = [k for k, r in enumerate(records) if record_key(r) not in done]
            unreadable = [error_record(s.split, s.id, s.label, s.visit, e) for i, e in zip(positions, errors)
                          if e and (s := stream.sample(i, p.suite.splits)).key not in done]
            written, seconds = [records[k] for k in fresh] + unreadable, tally.lap()
            writer.commit(written[:len(fresh)], logits[fresh].cpu().numpy() if logits is not None else None, unreadable,
                          tally.cost, seconds=seconds, samples=len(records), teacher_forwards=out.teacher_forwards,
                          adaptation_steps=out.adaptation_steps)
            done.update(record_key(r) for r in written)
            tally.batch(written, previous, records, len(positions), seconds, out, len(done))
    except CorruptImageError as exc:
        raise UserError(f"{worker_error(exc)}; the run stopped, predictions so far are kept in {folder.path}: rerun "
                        "with --on-error skip to skip and count such files") from None
    finally:
        tally.close()
    distributed.barrier(dist)
    return _summarize(p, folder, method, device, precision, dist, tally, redo, log) if dist.main else {}


def _loader(p: Prepared, method: Method, batches: list[list[int]], device: torch.device) -> DataLoader:
    transform = method.teacher.transform_for(p.suite.spec.stored)  # the suite's stored geometry honoured
    dataset = StreamDataset(p.suite.splits, p.stream.items, transform, p.cfg.on_error == "skip", method.raw_images)
    return DataLoader(dataset, batch_sampler=batches, num_workers=p.cfg.num_workers, collate_fn=collate,
                      pin_memory=device.type == "cuda")


def _predict_batch(p: Prepared, method: Method, positions: list[int], images: torch.Tensor | None, errors: list[str],
                   raw: list[torch.Tensor] | None, device: torch.device, amp: ContextManager
                   ) -> tuple[list[dict[str, Any]], torch.Tensor | None, Output]:
    """The prediction records of a batch's readable samples, their logits, and the method's output (its cost)."""
    cfg = p.cfg
    kept = [p.stream.sample(i, p.suite.splits) for i, e in zip(positions, errors) if not e]
    if images is None:
        return [], None, Output(torch.empty(0))
    images = memory_format.batch(images.to(device, non_blocking=True), method.teacher.memory_format)
    batch = Batch(images, [sample_seed(cfg.seed, s.split, s.id) for s in kept], tuple(cfg.record_steps or ()), raw)
    with amp:
        out = _predict(method, batch)
    logits = out.logits.float()
    if cfg.save_logits:  # predictions from the saved float16 values, so they recompute exactly
        logits = logits.half().float()
    # stable order: ties go to the lower class index, as `metrics` recomputes it from saved logits
    top5 = logits.sort(dim=1, descending=True, stable=True).indices[:, :5].cpu().tolist()
    diverged = (~logits.isfinite().all(1)).tolist()  # a NaN/inf update: no prediction to count
    classes = p.suite.classes
    records = [outputs.mark(prediction_record(s.split, s.id, s.label, s.visit, [classes[j] for j in t5], extra, bad),
                            cfg) for s, t5, extra, bad in zip(kept, top5, out.extras or [{} for _ in kept], diverged)]
    return records, logits, out


def _predict(method: Method, batch: Batch) -> Output:
    """Out of memory: let the method shrink its working set (APM's query chunk) and retry, else say so."""
    while True:
        try:
            return method.predict(batch)
        except torch.OutOfMemoryError:
            if not method.on_out_of_memory():
                raise UserError(f"{method.name} ran out of memory on a batch of {len(batch.images)}: lower "
                                "--batch-size (or the method's chunk size); finished predictions are kept") from None


def _summarize(p: Prepared, folder: RunFolder, method: Method, device: torch.device, precision: str,
               dist: distributed.Dist, tally: Progress, redo: int, log: Log) -> dict[str, Any]:
    """Rank 0 at the end: every rank's records merged in stream order, summarised with the run's metadata."""
    order = {p.stream.sample(i, p.suite.splits).key: i for i in range(len(p.stream.items))}
    records = folder.merge(order, p.suite.classes)
    cost = cost_record(folder.total_cost(), peak_memory_mb(device), getattr(method, "flops_per_sample", None))
    cost["eta"] = tally.eta.record()
    if redo and (folder.path / SUMMARY).exists():  # outputs added to a finished run: its cost stays the run's
        cost = {**json.loads((folder.path / SUMMARY).read_text()).get("cost", {}),
                "outputs_added": {"samples": tally.eta.total, "seconds": tally.last - tally.start,
                                  "changed_predictions": tally.changed}}
    if tally.changed:
        log(f"warning: {tally.changed} recomputed prediction(s) differ from the recorded ones (another device or "
            "library version?); the new ones are kept")
    teacher = method.teacher
    meta = run_meta(p.cfg, p.out.name, p.suite, p.stream, p.stream_hash,
                    transform=repr(teacher.transform_for(p.suite.spec.stored)), batch_size=p.defaults.batch_size,
                    method_options=dataclasses.asdict(method.options), defaults=p.defaults.record, notes=p.notes,
                    source_data=p.source_data, prompts={"spec": p.prompts, "sha256": file_hash(p.prompts)},
                    provenance={**provenance(device, teacher.weights_sha256 or ""),
                                "memory_format": teacher.memory_format},
                    device=str(device), precision=precision, world_size=dist.world,
                    process_group=distributed.group_backend(), cost=cost)
    summary = summarize(records, [s.name for s in p.suite.splits], meta).to_dict()
    folder.write_summary(summary)
    return summary


def _prepare_source(method: Method, p: Prepared, device: torch.device, precision: str, log: Log) -> dict[str, Any] | None:
    """The one hook for source statistics: load the clean images the method asks for and let it digest them."""
    n = method.source_samples()
    if not n:
        return None
    data = load_source_data(p.cfg, n)
    log(f"{method.name}: {len(data.source)} clean source images from {data.origin}")
    loader = DataLoader(SourceImages(data.source, method.teacher.transform), batch_size=p.defaults.batch_size,
                        num_workers=p.cfg.num_workers)
    with autocast(device, precision):
        method.prepare_source(batch.to(device) for batch in loader)
    return {"n": len(data.source), "origin": data.origin, "ids_sha256": hashlib.sha256(
        "\n".join(data.source.ids).encode()).hexdigest()}

"""The run folder: config.json, predictions.jsonl (appended and flushed as produced), summary.json (atomic).

Nothing already written is lost on a crash: predictions are flushed per batch, a half-written last line is
dropped on resume, and summaries are written to a temporary file and renamed into place. A folder cannot lie about
what produced it: one process at a time holds its lock; inputs.json fingerprints what determines the predictions
(weights, prompt file, the stream's samples) and a resume with other inputs stops; cost/ keeps the compute of
every session, so a resumed run reports the time the whole run took.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import UserError
from .vocabulary import CONFIG, COST, INPUTS, LOCK, LOGITS, PREDICTIONS, SHARDS, SUMMARY, record_key

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file and rename it into place; on failure (disk full) the old file stays, the temporary
    one is removed, and the error says so in one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc} (disk full or read-only?); the previous "
                        "version is intact, rerun once there is room") from None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (checkpoints, heads, prompt files: the one implementation)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


RUNS_DIR = Path("results/runs")


def default_out(cfg: RunConfig) -> Path:
    """A run's folder when ``--out`` is not given: named by suite, method, teacher and seed, and a hash of what the run
    computes (``RunConfig.identity``), so that rerunning the same command resumes the same folder."""
    digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:8]
    teacher = re.sub(r"[^A-Za-z0-9.]+", "-", cfg.teacher).strip("-")
    return RUNS_DIR / f"{cfg.suite}-{cfg.method}-{teacher}-seed{cfg.seed}-{digest}"


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete records of a predictions file; a torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            records.append(json.loads(line))
    return records


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    @classmethod
    def open(cls, path: str | Path, config: RunConfig) -> "RunFolder":
        """Create the folder, or reopen it to resume, holding its lock; a folder of a different configuration is
        refused."""
        folder = cls(Path(path))
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            folder._acquire()
            existing = folder.path / CONFIG
            if existing.exists():
                old = RunConfig.from_dict(json.loads(existing.read_text())).identity()
                if old != config.identity() and folder.holds_results():
                    if not config.overwrite:
                        diff = {k: (old.get(k), v) for k, v in config.identity().items() if old.get(k) != v}
                        raise UserError(f"{folder.path} holds a run of another configuration (differs in "
                                        f"{', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                                        "use another --out, or --overwrite to discard it")
                    folder.discard()
            write_json(folder.path / CONFIG, config.to_dict())
            folder._truncate_torn_line()
        except OSError as exc:
            folder.release()
            raise UserError(f"cannot write the run folder {folder.path}: {exc.strerror or exc}") from None
        except UserError:
            folder.release()
            raise
        return folder

    def _acquire(self) -> None:
        """An exclusive lock for the life of this process (the kernel drops it when the process dies, so a lock left
        by a killed run never blocks); the lock file names its holder for the message another run prints."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.path} is in use by {holder}; wait for it to finish, or give this run another "
                            "--out (two runs in one folder would mix their predictions)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)[:300]}\n".encode())
        self._lock = fd

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None

    def check_inputs(self, inputs: dict[str, Any], overwrite: bool) -> None:
        """Fingerprints of what determines the predictions, recorded at the first start; a resume whose inputs
        differ (another checkpoint, an edited prompt file, other images in the data root) stops, naming them."""
        path = self.path / INPUTS
        if path.exists() and self.holds_results():
            old = json.loads(path.read_text())
            changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
            if changed and not overwrite:
                raise UserError(f"{self.path} was started with other inputs: {', '.join(changed)} changed since "
                                "(a resume would mix two runs); restore them, use another --out, or --overwrite")
            if changed:
                self.discard()
        write_json(path, inputs)

    def discard(self) -> None:
        """Empty the folder for a fresh start (--overwrite), all but the lock this process holds."""
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def holds_results(self) -> bool:
        """A folder whose run failed before its first prediction (a bad teacher name, say) holds nothing to
        protect: the corrected command may take it over."""
        return bool(self.records()) or (self.path / SUMMARY).exists()

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    def _truncate_torn_line(self) -> None:
        for path in [self.predictions_path, *sorted((self.path / SHARDS).glob("*.jsonl"))]:
            if path.exists():
                data = path.read_bytes()
                end = data.rfind(b"\n") + 1
                if end != len(data):
                    with open(path, "r+b") as f:
                        f.truncate(end)

    def records(self) -> list[dict[str, Any]]:
        """Every finished record: the merged file and any shard files of an unfinished sharded run. A sample
        recomputed to add an output (outputs.py) appears again later: the later record replaces the earlier."""
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        for path in [self.predictions_path, *sorted((self.path / SHARDS).glob("*.jsonl"))]:
            for r in read_records(path):
                out[record_key(r)] = r
        return list(out.values())

    def cost_log(self, rank: int) -> "CostLog":
        return CostLog(self.path / COST / f"rank{rank}.json")

    def total_cost(self) -> dict[str, float]:
        """Compute spent on this run by every rank of every session, from cost/."""
        total = dict.fromkeys(CostLog.FIELDS, 0.0)
        for path in sorted((self.path / COST).glob("rank*.json")):
            for k, v in json.loads(path.read_text()).items():
                total[k] = total.get(k, 0.0) + v
        return total

    def writer(self, rank: int, world: int, save_logits: bool) -> "RecordWriter":
        """Where this process appends: predictions.jsonl in a single process, shards/rank<R>.jsonl under torchrun."""
        name = PREDICTIONS if world == 1 else f"{SHARDS}/rank{rank}.jsonl"
        logits = self.path / LOGITS / f"rank{rank}.f16" if save_logits else None
        return RecordWriter(self.path / name, logits, f"rank{rank}")

    def merge(self, order: dict[tuple[str, str], int], classes: list[int]) -> list[dict[str, Any]]:
        """Rank 0 at the end: all records in stream order into predictions.jsonl (atomically), and the saved
        logits into one float16 array per split, row-aligned with that split's records."""
        records = sorted(self.records(), key=lambda r: order.get(record_key(r), len(order)))
        raw = {p.stem: p for p in (self.path / LOGITS).glob("*.f16")}
        if raw:
            arrays = {name: np.fromfile(path, dtype=np.float16).reshape(-1, len(classes)) for name, path in raw.items()}
            kept = self._saved_logits()  # a finished run's arrays, when a rerun added outputs to it
            by_split: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = {}
            for r in records:
                if "logits_row" in r:
                    row = arrays[r["logits_file"]][r["logits_row"]]
                elif (row := kept.get(record_key(r))) is None:
                    continue
                by_split.setdefault(r["split"], []).append((r, row))
            for split, rows in by_split.items():
                save_npz(self.path / LOGITS / f"{split}.npz", logits=np.stack([row for _, row in rows]),
                         ids=np.array([r["id"] for r, _ in rows]),
                         visits=np.array([r.get("visit", 0) for r, _ in rows], dtype=np.int64),
                         classes=np.asarray(classes, dtype=np.int64))
        for r in records:  # the per-split arrays replace the raw rows: drop the row references
            r.pop("logits_file", None)
            r.pop("logits_row", None)
        atomic_write_text(self.predictions_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        shutil.rmtree(self.path / SHARDS, ignore_errors=True)
        for path in raw.values():
            path.unlink()
        return records

    def _saved_logits(self) -> dict[tuple[str, str, int], np.ndarray]:
        out = {}
        for path in (self.path / LOGITS).glob("*.npz"):
            with np.load(path, allow_pickle=False) as z:
                visits = z["visits"] if "visits" in z.files else np.zeros(len(z["ids"]), dtype=np.int64)
                out |= {(path.stem, str(i), int(v)): row for i, v, row in zip(z["ids"], visits, z["logits"])}
        return out

    def write_summary(self, summary: dict[str, Any]) -> None:
        try:
            write_json(self.path / SUMMARY, summary)
        except OSError as exc:
            raise UserError(f"cannot write {self.path / SUMMARY}: {exc.strerror or exc}") from None


class CostLog:
    """One rank's running totals, rewritten after every batch: a resumed run adds to what the sessions before it
    spent, and a session killed after its last prediction still counts."""

    FIELDS = ("seconds", "samples", "teacher_forwards", "adaptation_steps")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.totals = dict.fromkeys(self.FIELDS, 0.0)
        if path.exists():
            self.totals.update(json.loads(path.read_text()))
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, **amounts: float) -> None:
        for k, v in amounts.items():
            self.totals[k] += v
        write_json(self.path, self.totals)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class RecordWriter:
    """Appends records (and optionally their logits, float16) and flushes each batch to disk."""

    def __init__(self, path: Path, logits_path: Path | None, name: str) -> None:
        self.path, self.logits_path, self.name = path, logits_path, name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if logits_path is not None:
                logits_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write the run folder {path.parent}: {exc.strerror or exc}") from None

    def append(self, records: list[dict[str, Any]], logits: np.ndarray | None = None) -> None:
        try:
            if self.logits_path is not None and logits is not None and len(records):
                self._append_logits(records, logits.astype(np.float16))
            with open(self.path, "a") as f:
                f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise UserError(f"cannot write predictions to {self.path}: {exc.strerror or exc} "
                            "(disk full or read-only?); what was written before is intact, rerun to resume") from None

    def _append_logits(self, records: list[dict[str, Any]], logits: np.ndarray) -> None:
        """Rows first, records after: a record never points at a row that is not on disk."""
        row_bytes = logits.shape[1] * 2
        with open(self.logits_path, "ab") as f:
            size = f.seek(0, os.SEEK_END)
            if size % row_bytes:  # a torn row from a crash: drop it
                f.truncate(size - size % row_bytes)
                size -= size % row_bytes
            first = size // row_bytes
            f.write(logits.tobytes())
            f.flush()
            os.fsync(f.fileno())
        for k, r in enumerate(records):
            r["logits_file"], r["logits_row"] = self.name, first + k

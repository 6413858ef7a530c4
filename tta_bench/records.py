"""The run folder: config.json, predictions.jsonl (appended and flushed as produced), summary.json (atomic).

Nothing already written is lost on a crash: predictions are flushed per batch, a half-written last line is
dropped on resume, and summaries are written to a temporary file and renamed into place. A batch is committed
whole: its records, then its cost; a write that fails (a full disk) takes the batch back, so cost and predictions
agree. A folder cannot lie about
what produced it: one process at a time holds its lock; inputs.json fingerprints what determines the predictions
(weights, prompt file, the stream's samples) and a resume with other inputs stops; cost/ keeps the compute of
every session, so a resumed run reports the time the whole run took.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import UserError
from .files import atomic_write_text, disk_error, replace_atomically, save_npz, write_json
from .vocabulary import CONFIG, COST, INPUTS, LOCK, LOGITS, PREDICTIONS, SHARDS, SUMMARY, record_key

import numpy as np


RUNS_DIR = Path("results/runs")


def default_out(cfg: RunConfig) -> Path:
    """A run's folder when ``--out`` is not given: named by suite, method, teacher and seed, and a hash of what the run
    computes (``RunConfig.identity``), so that rerunning the same command resumes the same folder."""
    digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:8]
    teacher = re.sub(r"[^A-Za-z0-9.]+", "-", cfg.teacher).strip("-")
    return RUNS_DIR / f"{cfg.suite}-{cfg.method}-{teacher}-seed{cfg.seed}-{digest}"


RECORD_FIELDS = ("split", "id", "label", "pred", "top5", "correct", "status")  # what every record holds


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete records of a predictions file; a torn last line (a crash mid-write) is ignored. A damaged complete
    line (not a JSON record: a disk or copy error, a hand edit) stops, naming it and how to keep the lines before."""
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError as exc:  # invalid JSON or UTF-8
                raise _damaged(path, number, f"not JSON: {exc}") from None
            missing = [k for k in RECORD_FIELDS if k not in record] if isinstance(record, dict) else RECORD_FIELDS
            if missing:
                raise _damaged(path, number, f"not a prediction record, lacks {', '.join(missing)}")
            records.append(record)
    return records


def _damaged(path: Path, number: int, reason: str) -> UserError:
    """Say which line, and how to drop it and what follows it: the rerun then predicts those samples again."""
    kept, tmp = shlex.quote(str(path)), shlex.quote(str(path.with_name(f".{path.name}.kept")))
    return UserError(f"{path}:{number} is damaged ({reason}); to keep the {number - 1} line(s) before it and predict "
                     f"the rest again, run `head -n {number - 1} {kept} > {tmp} && mv {tmp} {kept}`, then rerun "
                     "the same command")


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
            atomic_write_text(folder.path / CONFIG, config.to_json())  # strict JSON: no NaN or infinity
            folder._truncate_torn_line()
        except OSError as exc:
            folder.release()
            raise UserError(f"cannot write the run folder {folder.path}: {exc.strerror or exc}") from None
        except UserError:
            folder.release()
            raise
        return folder

    def _acquire(self) -> None:
        """An exclusive lock for the life of this process. A POSIX record lock (``lockf``) belongs to the process
        alone: the kernel drops it when the process dies, and the DataLoader workers it forks do not hold it, so a
        killed run's folder is free at once (``flock`` would live on in workers that outlive their parent). The lock
        file names its holder, in full, for the message another run prints."""
        path = self.path / LOCK
        # this process may hold it already: a record lock never conflicts with its own process, and closing any
        # descriptor of the file would drop it, so that is found out without opening the file
        held = _HELD.get(_file_key(os.stat(path))) if path.exists() else None
        if held:
            raise _in_use(self.path, held)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        key = _file_key(os.fstat(fd))
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            recorded = _read_all(fd).decode(errors="replace").strip()
            holder = _lock_holder(fd)
            os.close(fd)
            raise _in_use(self.path, _describe_holder(recorded, holder)) from None
        os.ftruncate(fd, 0)
        line = (f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{shlex.join(sys.argv)}")
        os.write(fd, f"{line}\n".encode())
        _HELD[key] = line
        self._lock = fd

    def release(self) -> None:
        if self._lock is not None:
            _HELD.pop(_file_key(os.fstat(self._lock)), None)
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None

    def check_inputs(self, inputs: dict[str, Any], overwrite: bool) -> None:
        """Fingerprints of what determines the predictions, recorded at the first start; a resume whose inputs
        differ (another checkpoint, an edited prompt file, other images in the data root) stops, naming them."""
        path = self.path / INPUTS
        if path.exists() and self.holds_results():
            old = json.loads(path.read_text())
            # a fingerprint the folder's first start did not record (an older tta_bench) cannot be compared
            changed = sorted(k for k in set(old) | set(inputs) if k in old and old.get(k) != inputs.get(k))
            if changed and not overwrite:
                what = [_changed_data(old["data"], inputs.get("data")) if k == "data" else k for k in changed]
                raise UserError(f"{self.path} was started with other inputs: {', '.join(what)} changed since "
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
        write_json(self.path / SUMMARY, summary)


def _changed_data(old: dict[str, str], new: dict[str, str] | None) -> str:
    """Which splits' samples changed, and what was compared (``<kind>:<digest>`` fingerprints, data/sources.py)."""
    new = new or {}
    names = [n for n in dict.fromkeys([*old, *new]) if old.get(n) != new.get(n)]
    kinds = sorted({f.split(":", 1)[0] for f in (old.get(n) or new.get(n) for n in names) if f and ":" in f})
    return (f"the samples of split(s) {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            + (f" ({', '.join(kinds)})" if kinds else ""))


# the lock files this process holds (device, inode) -> its holder line: a second open in the same process is refused
# without opening another descriptor of the file, as closing one would drop the process's record lock
_HELD: dict[tuple[int, int], str] = {}


def _file_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _lock_holder(fd: int) -> int | None:
    """The process the kernel says holds the lock (F_GETLK), or None where the platform does not tell."""
    try:
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, probe + bytes(32 - len(probe)))
        kind, _, _, _, pid = struct.unpack("hhqqi", answer[:struct.calcsize("hhqqi")])
    except (OSError, struct.error):
        return None
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _describe_holder(recorded: str, holder: int | None) -> str:
    """The recorded holder line, or what the kernel says where the recorded process on this host is dead (the lock
    then belongs to a process that has not written its line yet)."""
    match = re.match(r"process (\d+) on (\S+) ", recorded)
    if match and match.group(2) == socket.gethostname() and not _alive(int(match.group(1))):
        now = f"process {holder}" if holder else "another process"
        return f"{now} (the recorded holder, {recorded}, is no longer running)"
    if recorded:
        return recorded
    return f"process {holder}" if holder else "another process"


def _in_use(path: Path, holder: str) -> UserError:
    return UserError(f"{path} is in use by {holder}; wait for it to finish, or give this run another --out (two "
                     "runs in one folder would mix their predictions)")


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
        """Add one batch's amounts; the totals change only once they are on disk (an OSError leaves them as were)."""
        totals = {k: v + amounts.get(k, 0.0) for k, v in self.totals.items()}
        replace_atomically(self.path, json.dumps(totals, indent=2, sort_keys=True) + "\n")
        self.totals = totals


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

    def commit(self, records: list[dict[str, Any]], logits: np.ndarray | None, errors: list[dict[str, Any]],
               cost: CostLog, **amounts: float) -> None:
        """One batch, all or nothing: its logits rows and records (predictions, then unreadable images) appended and
        flushed to disk, then its cost added. A failure on the way (a full disk) takes back what this batch
        appended, so that the cost log counts exactly the recorded samples; the error names the full disk."""
        marks = [(path, path.stat().st_size if path.exists() else 0)
                 for path in (self.path, self.logits_path) if path is not None]
        try:
            if self.logits_path is not None and logits is not None and len(records):
                self._append_logits(records, logits.astype(np.float16))
            if records or errors:
                with open(self.path, "a") as f:
                    f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records + errors))
                    f.flush()
                    os.fsync(f.fileno())
            cost.add(**amounts)
        except OSError as exc:
            for path, size in marks:
                if path.exists():
                    os.truncate(path, size)
            raise disk_error(self.path, exc, "the batches before this one are recorded, with their cost") from None

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

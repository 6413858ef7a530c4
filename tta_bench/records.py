"""The run folder: config.json, predictions.jsonl (appended and flushed as produced), summary.json (atomic).

Nothing already written is lost on a crash: predictions are flushed per batch, a half-written last line is
dropped on resume, and summaries are written to a temporary file and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from .config import RunConfig
from .errors import UserError

PREDICTIONS, SUMMARY, CONFIG = "predictions.jsonl", "summary.json", "config.json"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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

    @classmethod
    def open(cls, path: str | Path, config: RunConfig) -> "RunFolder":
        """Create the folder, or reopen it to resume; a folder of a different configuration is refused."""
        folder = cls(Path(path))
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            existing = folder.path / CONFIG
            if existing.exists():
                old = RunConfig.from_dict(json.loads(existing.read_text())).identity()
                if old != config.identity():
                    if not config.overwrite:
                        diff = {k: (old.get(k), v) for k, v in config.identity().items() if old.get(k) != v}
                        raise UserError(f"{folder.path} holds a run of another configuration (differs in "
                                        f"{', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                                        "use another --out, or --overwrite to discard it")
                    shutil.rmtree(folder.path)
                    folder.path.mkdir(parents=True)
            write_json(folder.path / CONFIG, config.to_dict())
            folder._truncate_torn_line()
        except OSError as exc:
            raise UserError(f"cannot write the run folder {folder.path}: {exc.strerror or exc}") from None
        return folder

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    def _truncate_torn_line(self) -> None:
        path = self.predictions_path
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(path, "r+b") as f:
                f.truncate(end)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.predictions_path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        try:
            with open(self.predictions_path, "a") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise UserError(f"cannot write predictions to {self.predictions_path}: {exc.strerror or exc} "
                            "(disk full or read-only?); what was written before is intact, rerun to resume") from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        try:
            write_json(self.path / SUMMARY, summary)
        except OSError as exc:
            raise UserError(f"cannot write {self.path / SUMMARY}: {exc.strerror or exc}") from None

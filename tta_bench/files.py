"""Files written so that a crash or a full disk never leaves a half-written one: atomic replacement, one-line errors
that name the full disk, and the one file-content hash (checkpoints, heads, prompt files, downloads)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file and rename it into place; on failure (disk full) the old file stays, the temporary
    one is removed, and the error says so in one line."""
    try:
        replace_atomically(path, text)
    except OSError as exc:
        raise disk_error(path, exc, "the previous version is intact") from None


def replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def disk_error(path: Path, exc: OSError, kept: str) -> UserError:
    """One line for a write that failed: a full disk is named by where it is mounted."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        full = "is full" if exc.errno == errno.ENOSPC else "is over your quota"
        return UserError(f"cannot write {path}: {reason}: the disk mounted at {_mount_point(path)} {full}; {kept}: "
                         "free space there and rerun the same command to resume")
    return UserError(f"cannot write {path}: {reason} (read-only?); {kept}: rerun the same command once it is "
                     "writable")


def _mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (checkpoints, heads, prompt files: the one implementation)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, exc, "the previous version is intact") from None

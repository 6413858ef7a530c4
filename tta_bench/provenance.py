"""Where, when and from what a run was made, for summary.json: the command line, a UTC timestamp, whether the source
tree had uncommitted changes, the machine (CPU and GPU model, threads) and a hash of the teacher's weights.

A number in a paper table is then traceable to the exact invocation and the exact weights, even when the weights
came from a download that may change later.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line() -> list[str]:
    """The process's arguments as typed (``run_bench.py --suite ...``); a Python API call records its interpreter's."""
    return list(sys.argv)


def tree_dirty() -> bool | None:
    """True when tracked files differ from the commit (the run may not be reproducible from the commit alone);
    None outside a git checkout (an installed package)."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(done.stdout.strip()) if done.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host(device: torch.device) -> dict[str, Any]:
    """The hardware a run's timings belong to."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "platform": platform.platform()}


def weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over the module's state dict (names, dtypes, shapes, bytes) in key order: equal weights give equal
    hashes whatever file or download they came from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def provenance(device: torch.device, teacher_sha256: str) -> dict[str, Any]:
    return {"command": command_line(), "utc": utc_timestamp(), "git_dirty": tree_dirty(), "host": host(device),
            "teacher_sha256": teacher_sha256}

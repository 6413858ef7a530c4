"""Safe loading of weight files: safetensors or ``torch.load(weights_only=True)``, never arbitrary pickles.

Every failure is one line naming the file: a missing, empty or garbage file, a pickle that weights_only refuses, a
file whose name carries a sha256 prefix (the release convention: ``resnet20-12fca82f.th``) that its content does not
match.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


def verify_name_hash(path: Path) -> None:
    """A file named ``<stem>-<hex>.<ext>`` must have a sha256 starting with <hex>."""
    from ..downloads import name_hash
    from ..files import file_sha256

    expected = name_hash(path.name)
    if expected:
        digest = file_sha256(path)
        if not digest.startswith(expected):
            raise UserError(f"{path}: its content does not match the sha256 prefix in its name ({expected}; "
                            f"the file hashes to {digest[:len(expected)]}): a corrupt or swapped download")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"weights file {path} is empty (an interrupted download?)")
    verify_name_hash(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # weights_only refuses pickled code: report it instead of running it
        raise UserError(f"refused to load {path}: not a weights-only torch checkpoint (a pickle that could run code, "
                        "or not a checkpoint at all); give a state dict saved with torch.save or safetensors") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}

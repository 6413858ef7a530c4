"""Files fetched on first use into a cache folder, and verified before anything reads them.

A release file carries the SHA-256 prefix of its content in its name (``resnet20-12fca82f.th``, the torch.hub
convention): the download is hashed as it is written, and a file whose hash does not start with that prefix is
refused and deleted, never loaded. The cache is ``$TTA_BENCH_CACHE`` or ``~/.cache/tta_bench``; a file already there
(with the right hash) is used without a network. ``file://`` URLs work as well as ``https://`` ones, which is how the
download path is tested offline.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from .errors import UserError

CACHE_ENV = "TTA_BENCH_CACHE"
TIMEOUT = 60.0  # seconds without a byte before a download gives up
CHUNK = 1 << 20
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")

# Teacher weights published as release files: akamaster/pytorch_resnet_cifar10, pretrained_models/ (its README's
# table links these names; they are the CIFAR-10 ResNets of He et al. 2016 that TENT-style CIFAR papers adapt).
RELEASE = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
WEIGHTS = {
    "cifar-resnet20": RELEASE + "resnet20-12fca82f.th",
    "cifar-resnet56": RELEASE + "resnet56-4bfd9763.th",
}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tta_bench").expanduser()


def name_hash(name: str) -> str | None:
    """The SHA-256 prefix a file name carries (``resnet20-12fca82f.th`` -> ``12fca82f``), or None."""
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def cached_file(url: str, what: str, alternative: str, folder: str = "weights") -> Path:
    """The file of ``url`` in the cache, downloaded and verified against the SHA-256 prefix of its name first if it
    is not there yet. ``what`` names it and ``alternative`` the offline option in error messages."""
    from .files import file_sha256

    name = url.rsplit("/", 1)[-1]
    expected = name_hash(name)
    if expected is None:
        raise ValueError(f"{url}: a release URL must name its SHA-256 prefix (<stem>-<hex>.<ext>)")
    target = cache_dir() / folder / name
    if target.is_file() and file_sha256(target).startswith(expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.{os.getpid()}.part")
    print(f"downloading {what} from {url} into {target.parent}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, partial.open("wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"could not download {what} from {url} ({reason}); offline alternative: {alternative}") \
            from None
    if not digest.hexdigest().startswith(expected):
        partial.unlink(missing_ok=True)
        raise UserError(f"refused the download of {what} from {url}: its content hashes to "
                        f"{digest.hexdigest()[:len(expected)]}, not the {expected} its name carries (a corrupt or "
                        f"swapped file); offline alternative: {alternative}")
    os.replace(partial, target)
    return target


def teacher_weights(teacher: str) -> Path:
    """The published weights of a teacher kind that has a release file (``WEIGHTS``), from the cache."""
    url = WEIGHTS[teacher]
    return cached_file(url, f"the weights of {teacher}", f"--weights PATH (a copy of {url.rsplit('/', 1)[-1]})")

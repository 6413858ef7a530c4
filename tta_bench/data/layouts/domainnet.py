"""DomainNet-126: four domains (real, clipart, painting, sketch) of 126 classes, each domain one split, so that every
stream setting (a reset per domain, continual, mixed domains, class-correlated) applies across them.

Follows mariodoebler/test-time-adaptation classification/datasets/imagelist_dataset.py (ImageList: one
``<domain>/<class>/<file> <label>`` line per image in ``<domain>_list.txt``, paths relative to the DomainNet root)
and conf.py ckpt_path_to_domain_seq (a source model ``best_<domain>_<seed>.pth`` is evaluated on the three other
domains in a fixed order). The lists are the unified benchmark's (from AdaContrast); they are read from the data
root and checked by size and by each line's class folder against the label space.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...errors import DataError
from ..labels import LabelSpace
from .entries import check_entries
from .registry import LAYOUTS
from ..sources import FileSource, SampleSource

DOMAINS = ("real", "clipart", "painting", "sketch")
# the unified benchmark's target sequence for a model trained on each source domain
SEQUENCE_AFTER = {"real": ("clipart", "painting", "sketch"), "clipart": ("sketch", "real", "painting"),
                  "painting": ("real", "sketch", "clipart"), "sketch": ("painting", "clipart", "real")}


def source_domain(weights: str | None) -> str | None:
    """The training domain a checkpoint's name states (``best_real_2020.pth`` -> real), as the reference reads it."""
    if not weights:
        return None
    parts = Path(weights).stem.split("_")
    return parts[1] if len(parts) > 1 and parts[1] in SEQUENCE_AFTER else None


@LAYOUTS.register("domainnet126_lists", "<root>/<domain>/<class>/<image> + <domain>_list.txt (DomainNet-126)")
def domainnet126_lists(root: Path, space: LabelSpace, domains: Sequence[str] = (), weights: str | None = None,
                       list_dirs: Sequence[str] = ("", "domainnet126_lists"), allow_partial: bool = False,
                       notes: list[str] | None = None, info: list[str] | None = None,
                       **_: object) -> list[tuple[str, SampleSource]]:
    chosen = list(domains) or _default_domains(weights, info)
    return [(d, _domain(root, d, space, list_dirs, allow_partial, notes)) for d in chosen]


def _default_domains(weights: str | None, info: list[str] | None) -> list[str]:
    trained_on = source_domain(weights)
    if trained_on is None:
        return list(DOMAINS)
    if info is not None:
        info.append(f"--weights {Path(str(weights)).name} names source domain {trained_on}: evaluating "
                     f"{', '.join(SEQUENCE_AFTER[trained_on])} as the unified benchmark does (--domains to change)")
    return list(SEQUENCE_AFTER[trained_on])


def _domain(root: Path, domain: str, space: LabelSpace, list_dirs: Sequence[str], allow_partial: bool,
            notes: list[str] | None) -> FileSource:
    candidates = [root / d / f"{domain}_list.txt" for d in list_dirs]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise DataError(f"no image list for domain {domain}: expected one of {[str(c) for c in candidates]} "
                        "(the unified benchmark's classification/datasets/domainnet126_lists/)")
    relpaths, labels, places = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{path}:{number}: expected '<domain>/<class>/<file> <label>', got {line!r}")
        relpath, label = fields[0], int(fields[1])
        parts = relpath.split("/")
        if len(parts) != 3 or parts[0] != domain or label >= len(space) or space.keys[label] != parts[1]:
            raise DataError(f"{path}:{number}: {relpath} with label {label} does not fit domain {domain} and the "
                            f"126 classes (label {label} is {space.keys[label] if label < len(space) else '?'!r})")
        relpaths.append(relpath)
        labels.append(label)
        places.append(f"line {number}")
    check_entries(relpaths, places, str(path))
    missing = [p for p in relpaths if not (root / p).is_file()]
    if missing:
        message = f"{root}: {len(missing):,} of the {len(relpaths):,} {domain} images are missing (e.g. {missing[:3]})"
        if not allow_partial:
            raise DataError(message + "\npass --allow-partial to run on what is there (the run is marked partial)")
        if notes is not None:
            notes.append(message)
        kept = [i for i, p in enumerate(relpaths) if (root / p).is_file()]
        relpaths, labels = [relpaths[i] for i in kept], [labels[i] for i in kept]
    return FileSource(root, relpaths, labels)

"""The ``hub`` source: a Hugging Face ``datasets`` dataset, from the Hub by id, or from a local folder saved
with ``save_to_disk`` or laid out as an ``imagefolder`` (which is how it is tested offline).

Labels are mapped to the suite's label space through the dataset's own class names (wnids, class names or
class-index strings), because Hub copies number classes within their own list (200 for ImageNet-R/-A).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .labels import LabelSpace
from .sources import HubSource
from .suites import HubSpec


def load_dataset(hub: HubSpec | None, hub_id: str | None, split: str | None, data_root: str | None) -> Any:
    import datasets

    if data_root:
        root = Path(data_root)
        if not root.is_dir():
            raise DataError(f"hub source: {root} does not exist (expected a save_to_disk folder or an imagefolder)")
        if (root / "dataset_info.json").exists() or (root / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(root))
        else:
            ds = datasets.load_dataset("imagefolder", data_dir=str(root))
        if isinstance(ds, datasets.DatasetDict):
            name = split or (hub.split if hub else None)
            name = name if name in ds else next(iter(ds))
            ds = ds[name]
        return ds
    repo = hub_id or (hub.id if hub else None)
    if repo is None:
        raise DataError("this suite has no standard Hugging Face copy: give --hub-id ID or use --source published")
    from ..network import fetching

    with fetching(f"the Hugging Face dataset {repo}", "a local copy with --data-root PATH (a save_to_disk folder or "
                  "an imagefolder)"):
        return datasets.load_dataset(repo, split=split or (hub.split if hub else "test"))


def _label_map(ds: Any, label_key: str, space: LabelSpace) -> list[int] | None:
    feature = ds.features.get(label_key)
    names = getattr(feature, "names", None)
    if not names:
        return None
    by_name = {n: i for i, n in enumerate(space.names)}
    out = []
    for n in names:
        if n in space:
            out.append(space.index_of(n))
        elif n.isdigit() and int(n) < len(space):
            out.append(int(n))
        elif n.replace("_", " ") in by_name:
            out.append(by_name[n.replace("_", " ")])
        else:
            raise DataError(f"hub dataset class {n!r} is neither a {space.name} key, a class index nor a class name")
    return out


def hub_source(ds: Any, hub: HubSpec | None, space: LabelSpace, name: str) -> HubSource:
    image_key = hub.image_key if hub and hub.image_key in ds.features else _first_key(ds, ("image", "img", "webp", "jpg"))
    label_key = hub.label_key if hub and hub.label_key in ds.features else _first_key(ds, ("label", "cls", "fine_label"))
    mapping = _label_map(ds, label_key, space)
    raw = ds[label_key]
    labels = [mapping[int(v)] if mapping else int(v) for v in raw]
    bad = [v for v in labels if not 0 <= v < len(space)]
    if bad:
        raise DataError(f"hub dataset labels {bad[:3]} fall outside the {space.name} label space")
    return HubSource(ds, image_key, list(range(len(labels))), labels, name)


def _first_key(ds: Any, candidates: tuple[str, ...]) -> str:
    for key in candidates:
        if key in ds.features:
            return key
    raise DataError(f"hub dataset has none of the columns {candidates}; it has {list(ds.features)}")

"""The ``hub`` source: a Hugging Face ``datasets`` dataset, from the Hub by id, or from a local folder saved
with ``save_to_disk`` or laid out as an ``imagefolder`` (which is how it is tested offline).

Labels are mapped to the suite's label space explicitly. Class names (``ClassLabel``) decide where a copy has them:
wnids, CLIP class names, or WordNet lemma lists as the Hub's ImageNet-1k uses them ("tench, Tinca tinca").
Integer labels are ambiguous for a 200-class suite (an ImageNet-1k index, or an index into the suite's own 200
classes?): the suite declares which (``label_index`` in its YAML, per known Hub id; ``--label-index`` overrides), and
a range of labels that contradicts the declaration stops the run naming the option to set.

No TTA reference code reads Hub copies (TPT, MEMO and the unified benchmark read folders), so this mapping is
tta_bench's own; it targets the conventions of the copies each suite YAML documents (the Hub imagenet-1k's
``ClassLabel`` names come from the same WordNet lemmas as timm's ImageNetInfo) and is tested on local copies.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError
from .labels import CLASS_LISTS, LabelSpace, class_list
from .sources import HubSource
from .suites import HubSpec

IMAGE_COLUMNS = ("image", "img", "webp", "jpg", "png")
LABEL_COLUMNS = ("label", "cls", "fine_label", "labels")


@dataclass(frozen=True)
class HubRead:
    """How one copy is read: its columns (None: the suite's, else guessed) and what its integer labels index."""

    image_column: str | None = None
    label_column: str | None = None
    label_index: str = "imagenet1k"  # imagenet1k | suite
    label_index_given: bool = False  # --label-index on the command line: the user's own declaration
    columns_given: tuple[bool, bool] = (False, False)  # --image-column / --label-column given (must exist)


def load_dataset(copy: HubSpec | None, split: str | None, data_root: str | None) -> Any:
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
            name = split or (copy.split if copy else None)
            name = name if name in ds else next(iter(ds))
            ds = ds[name]
        return ds
    if copy is None:
        raise DataError("this suite has no standard Hugging Face copy: give --hub-id ID or use --source published")
    from ..network import fetching

    with fetching(f"the Hugging Face dataset {copy.id}", "a local copy with --data-root PATH (a save_to_disk folder "
                  "or an imagefolder)"):
        return datasets.load_dataset(copy.id, split=split or copy.split)


def hub_source(ds: Any, read: HubRead, space: LabelSpace, name: str, subset: Sequence[int] | None) -> HubSource:
    """``subset``: the suite's fixed classes (ImageNet-1k indices of ImageNet-R/-A's 200), None for a full space."""
    image_key = _column(ds, read.image_column, read.columns_given[0], IMAGE_COLUMNS, "--image-column")
    label_key = _column(ds, read.label_column, read.columns_given[1], LABEL_COLUMNS, "--label-column")
    raw = [int(v) for v in ds[label_key]]
    names = getattr(ds.features.get(label_key), "names", None)
    if names and all(n.isdigit() for n in names):  # class-index strings: integers with the same ambiguity
        raw, names = [int(names[v]) for v in raw], None
    if names:
        mapping = [_class_of_name(n, k, len(names), space, subset) for k, n in enumerate(names)]
        labels = [mapping[v] for v in raw]
    else:
        labels = _integer_labels(raw, read, space, subset, name)
    return HubSource(ds, image_key, list(range(len(labels))), labels, name)


def _column(ds: Any, wanted: str | None, given: bool, candidates: tuple[str, ...], option: str) -> str:
    columns = list(ds.features)
    if wanted in columns:
        return wanted
    if given:
        raise DataError(f"{option} {wanted!r}: the dataset has no such column; it has {columns}")
    for key in candidates:
        if key in columns:
            return key
    raise DataError(f"hub dataset has none of the columns {candidates}; it has {columns}: name it with {option}")


def _integer_labels(raw: list[int], read: HubRead, space: LabelSpace, subset: Sequence[int] | None,
                    suite: str) -> list[int]:
    if subset is not None:
        if read.label_index == "suite":
            bad = [v for v in raw if not 0 <= v < len(subset)]
            if bad:
                raise DataError(f"hub copy of {suite}: label {max(bad)} found, but label_index 'suite' counts within its "
                                f"{len(subset)} classes (0..{len(subset) - 1}); if its labels are ImageNet-1k indices, "
                                "pass --label-index imagenet1k")
            return [subset[v] for v in raw]
        allowed = set(subset)
        bad = sorted({v for v in raw if v not in allowed})
        if bad:
            hint = f" (all labels are below {len(subset)}: the copy probably counts within its own classes)" \
                if raw and max(raw) < len(subset) else ""
            raise DataError(f"hub copy of {suite}: labels {bad[:5]} are not ImageNet-1k indices of its {len(subset)} "
                            f"classes{hint}; pass --label-index suite if they index the suite's own class list")
        return raw
    bad = [v for v in raw if not 0 <= v < len(space)]
    if bad:
        raise DataError(f"hub dataset labels {bad[:3]} fall outside the {space.name} label space")
    small = max(len(class_list(n)) for n in CLASS_LISTS)
    if len(space) > small and raw and max(raw) < small and not read.label_index_given:
        raise DataError(f"hub copy of {suite}: all {len(raw)} labels are below {small} on a {len(space)}-class suite, as "
                        f"a copy of ImageNet-R/-A counting its own {small} classes would be (use --suite imagenet-r or "
                        "imagenet-a); if they are ImageNet-1k indices, pass --label-index imagenet1k")
    return raw


def _class_of_name(name: str, position: int, n_names: int, space: LabelSpace, subset: Sequence[int] | None) -> int:
    """A class key (wnid), or a name: one name or a comma-separated list of synonyms, every one of which the class
    goes by. Names that fit several classes ("crane": the bird and the machine) are resolved by position only in a
    list as long as the suite's class list (the standard order); otherwise refused."""
    if name in space:
        return space.index_of(name)
    parts = [_normal(p) for p in name.split(",") if p.strip()]
    index = _name_index(space)
    candidates = set.intersection(*(index.get(p, set()) for p in parts)) if parts else set()
    if len(candidates) == 1:
        return candidates.pop()
    order = list(subset) if subset is not None else list(range(len(space)))
    if candidates and n_names == len(order) and order[position] in candidates:
        return order[position]
    if candidates:
        raise DataError(f"hub dataset class {name!r} fits several {space.name} classes "
                        f"({', '.join(space.keys[c] for c in sorted(candidates))}); give the copy wnid class names")
    raise DataError(f"hub dataset class {name!r} is neither a {space.name} key, a class index nor a class name")


def _normal(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


@lru_cache(maxsize=None)
def _name_index(space: LabelSpace) -> dict[str, set[int]]:
    """Every name a class goes by (its CLIP name, its synonyms) -> the classes that go by it."""
    index: dict[str, set[int]] = {}
    for c, own in enumerate(space.names):
        for text in (own, *(space.synonyms[c] if space.synonyms else ())):
            index.setdefault(_normal(text), set()).add(c)
    return index

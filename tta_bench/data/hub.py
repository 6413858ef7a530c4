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

import json
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


def load_dataset(copy: HubSpec | None, split: str | None, data_root: str | None) -> tuple[Any, str | None]:
    """The dataset and the name of the split read (None where a saved copy holds one unnamed dataset)."""
    import datasets

    if data_root:
        root = Path(data_root)
        if not root.is_dir():
            raise DataError(f"hub source: {root} does not exist (expected a save_to_disk folder or an imagefolder)")
        ds = _load_local(datasets, root)
        if isinstance(ds, datasets.DatasetDict):
            name = _split_of(root, list(ds), split, copy.split if copy else None)
            return ds[name], name
        return ds, str(ds.split) if ds.split else None
    if copy is None:
        raise DataError("this suite has no standard Hugging Face copy: give --hub-id ID or use --source published")
    from ..network import fetching

    with fetching(f"the Hugging Face dataset {copy.id}", "a local copy with --data-root PATH (a save_to_disk folder "
                  "or an imagefolder)"):
        try:
            return datasets.load_dataset(copy.id, split=split or copy.split), split or copy.split
        except ValueError as exc:  # datasets: 'Unknown split "x". Should be one of [...]'
            if "split" not in str(exc).lower():
                raise
            raise DataError(f"{copy.id}: no split {split or copy.split!r} ({exc}); name one with --hub-split") \
                from None


def _load_local(datasets: Any, root: Path) -> Any:
    """A save_to_disk folder or an imagefolder; what ``datasets`` cannot read (an empty copy: no data files) is one
    line naming the folder."""
    saved = (root / "dataset_info.json").exists() or (root / "dataset_dict.json").exists()
    try:
        return datasets.load_from_disk(str(root)) if saved else datasets.load_dataset("imagefolder", data_dir=str(root))
    except (OSError, ValueError, IndexError) as exc:
        lines = str(exc).strip().splitlines()
        reason = "an empty dataset: no rows to evaluate" if saved and _empty_save(root) else \
            (lines[0] if lines else type(exc).__name__)
        kind = "a save_to_disk folder" if saved else "an imagefolder"
        raise DataError(f"hub source: cannot read {root} as {kind} ({reason})") from None


def _empty_save(root: Path) -> bool:
    """A save_to_disk copy (or one split of it) of no rows: ``datasets`` writes no data file, then cannot load it."""
    states = [root / "state.json"] if (root / "state.json").exists() else list(root.glob("*/state.json"))
    return any(json.loads(state.read_text()).get("_data_files") == [] for state in states)


def _split_of(root: Path, splits: list[str], asked: str | None, declared: str | None) -> str:
    """The split a local copy is read from: the one asked for (--hub-split), else the suite's (its test split).
    Never another one in their place: a copy without that split stops, listing those it has. An imagefolder with no
    split folders is one split (``datasets`` names it train): the folder itself."""
    if asked is not None:
        if asked not in splits:
            raise DataError(f"--hub-split {asked!r}: {root} has no such split; it has {', '.join(splits)}")
        return asked
    if declared in splits:
        return declared
    if len(splits) == 1 and (declared is None or not any((root / name).exists() for name in splits)):
        return splits[0]
    problem = f"has no {declared!r} split" if declared else "holds several splits"
    raise DataError(f"{root} {problem} (it has {', '.join(splits)}): name the one to evaluate with --hub-split")


def hub_source(ds: Any, read: HubRead, space: LabelSpace, name: str, subset: Sequence[int] | None) -> HubSource:
    """``subset``: the suite's fixed classes (ImageNet-1k indices of ImageNet-R/-A's 200), None for a full space."""
    if len(ds) == 0:
        raise DataError(f"hub dataset {name}{_split_label(ds)} holds no rows: nothing to evaluate")
    image_key = _column(ds, read.image_column, read.columns_given[0], IMAGE_COLUMNS, "--image-column")
    label_key = _column(ds, read.label_column, read.columns_given[1], LABEL_COLUMNS, "--label-column")
    _check_image_column(ds, image_key)
    raw = _raw_labels(ds, label_key)
    names = getattr(ds.features.get(label_key), "names", None)
    if names:
        bad = next((k for k, v in enumerate(raw) if not 0 <= v < len(names)), None)
        if bad is not None:
            raise DataError(f"hub column {label_key!r}: row {bad} has label {raw[bad]}, not one of its {len(names)} "
                            "class names (-1: no label)")
    if names and all(n.isdigit() for n in names):  # class-index strings: integers with the same ambiguity
        raw, names = [int(names[v]) for v in raw], None
    if names:
        mapping = [_class_of_name(n, k, len(names), space, subset) for k, n in enumerate(names)]
        labels = [mapping[v] for v in raw]
    else:
        labels = _integer_labels(raw, read, space, subset, name)
    return HubSource(ds, image_key, list(range(len(labels))), labels, name)


def _split_label(ds: Any) -> str:
    split = getattr(ds, "split", None)
    return f" (split {split})" if split else ""


def _check_image_column(ds: Any, key: str) -> None:
    """Images or pixel arrays; a scalar column (an integer, a string) would fail at the first image."""
    import datasets

    feature = ds.features[key]
    if isinstance(feature, (datasets.Value, datasets.ClassLabel)):
        kind = getattr(feature, "dtype", type(feature).__name__)
        raise DataError(f"hub column {key!r} holds {kind} values, not images (a datasets Image feature or pixel "
                        f"arrays); name the image column with --image-column (columns: {list(ds.features)})")


def _raw_labels(ds: Any, key: str) -> list[int]:
    """Integer labels, as the .npy path reads them: class indices or ClassLabel codes. Floats (3.5 would become 3),
    strings and missing labels are refused, naming the column and an example."""
    import datasets

    feature = ds.features[key]
    values = ds[key]
    dtype = getattr(feature, "dtype", None)
    if not (isinstance(feature, datasets.ClassLabel)
            or isinstance(dtype, str) and dtype.startswith(("int", "uint"))):
        example = next((v for v in values if v is not None), None)
        hint = " (class names: cast the column to a ClassLabel, datasets' class_encode_column)" \
            if dtype in ("string", "large_string") else ""
        raise DataError(f"hub column {key!r} holds {dtype or type(feature).__name__} labels (e.g. {example!r}); "
                        f"expected integer class indices or a ClassLabel column{hint}")
    missing = next((k for k, v in enumerate(values) if v is None), None)
    if missing is not None:
        raise DataError(f"hub column {key!r}: row {missing} has no label (None); every row needs one")
    return [int(v) for v in values]


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

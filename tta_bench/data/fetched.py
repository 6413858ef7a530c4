"""Small clean test sets fetched on first use: a suite marked ``fetch: true`` (CIFAR-10) runs without --data-root.

Its documented Hugging Face copy is read once, its labels mapped to the suite's label space as any Hub copy's are,
checked against the published size, and written into the cache as ``images.npy`` + ``labels.npy`` (the layout the
clean CIFAR reader takes, loaded with ``allow_pickle=False``); later runs read those arrays and need no network.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..downloads import cache_dir
from ..errors import DataError
from .hub import HubRead, hub_source, load_dataset
from .labels import label_space
from .suites import SuiteSpec


def fetched_folder(spec: SuiteSpec) -> Path:
    return cache_dir() / "datasets" / spec.name


def fetched_clean_set(spec: SuiteSpec) -> Path:
    """The cached copy of ``spec``'s test set (``images.npy`` + ``labels.npy``), fetched from the Hub if absent."""
    folder = fetched_folder(spec)
    if (folder / "labels.npy").is_file() and (folder / "images.npy").is_file():
        return folder
    copy = spec.hub
    if copy is None:
        raise ValueError(f"suite {spec.name} is marked fetch but names no Hugging Face copy")
    print(f"fetching the {spec.name} test set from the Hugging Face Hub ({copy.id}, split {copy.split}) into {folder}")
    dataset = load_dataset(copy, None, None)
    read = HubRead(copy.image_key, copy.label_key, copy.label_index or spec.label_index)
    source = hub_source(dataset, read, label_space(spec.labels), spec.name, None)
    if spec.expected_images is not None and len(source) != spec.expected_images:
        raise DataError(f"{copy.id} ({copy.split}) holds {len(source):,} images, not the {spec.expected_images:,} of "
                        f"the {spec.name} test set; give a copy with --data-root PATH")
    images = np.stack([np.asarray(source.load(i)) for i in range(len(source))])
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.save(partial / "images.npy", images)
    np.save(partial / "labels.npy", np.asarray(source.labels, dtype=np.int64))
    shutil.rmtree(folder, ignore_errors=True)  # a half-written copy of an earlier, interrupted attempt
    os.replace(partial, folder)
    return folder

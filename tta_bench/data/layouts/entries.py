"""The entries of list files (CoOp's split files, DomainNet's image lists, FGVC Aircraft's test list): image paths
relative to the data root, each listed once.

A duplicate would plan N samples and write fewer (records are keyed by path), silently; a path that is absolute or
climbs with ``..`` would read an image from outside the dataset. Both stop the run, naming the first offending entry.
"""
from __future__ import annotations

import posixpath
from pathlib import PurePosixPath, PureWindowsPath
from typing import Sequence

from ...errors import DataError


def check_entries(paths: Sequence[str], places: Sequence[str], where: str) -> None:
    """``paths[k]`` is listed at ``places[k]`` (e.g. ``test[3]``, ``line 7``) of the list file ``where``."""
    seen: dict[str, str] = {}
    for path, place in zip(paths, places):
        if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or ".." in path.replace(
                "\\", "/").split("/"):
            raise DataError(f"{where}: {place} is {path!r}, outside the data root (absolute or climbing with '..'); "
                            "list files name images relative to the dataset folder")
        key = posixpath.normpath(path)
        if key in seen:
            raise DataError(f"{where}: {path!r} is listed twice ({seen[key]} and {place}); every image is evaluated "
                            "once: remove the duplicate")
        seen[key] = place

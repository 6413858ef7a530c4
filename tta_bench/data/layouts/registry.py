"""The registry of on-disk layout readers: each takes the data root (and what its suite says) and returns (split
name, source) pairs. The readers register themselves in the modules beside this one."""
from __future__ import annotations

from typing import Callable

from ...registry import Registry
from ..sources import SampleSource

Layout = Callable[..., list[tuple[str, SampleSource]]]
LAYOUTS: Registry[Layout] = Registry("layout")

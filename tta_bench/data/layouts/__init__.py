"""Readers of datasets as they are laid out on disk: the standard published layouts (standard), CoOp's
fine-grained splits, DomainNet-126's image lists and the offline demo photographs. Importing the package registers
every reader in ``LAYOUTS``."""
from __future__ import annotations

from . import demo, domainnet, fine_grained, standard  # noqa: F401  (each registers its layouts)
from .registry import LAYOUTS, Layout

__all__ = ["LAYOUTS", "Layout"]

"""A run configuration checked before anything is written, the same way for every entry point (the command line,
``--dry-run`` included, run files, sweep runs, the Python API): its fields (RunConfig.validate), the method and the
types of its options (the method's own options dataclass), the teacher's name and files, and that config.json can
record it. Whatever fails here fails in one line, with no run folder left behind."""
from __future__ import annotations

from typing import Literal

from .config import RunConfig


def preflight(cfg: RunConfig, names: Literal["flags", "fields"] = "flags") -> None:
    """UserError for the first thing wrong with ``cfg``; ``names``: how fields are named in the message (by flag on
    the command line, by field name for run files and the API)."""
    from .teachers.names import check_teacher

    cfg.validate(names)
    check_method_options(cfg)
    check_teacher(cfg.teacher, cfg.weights, cfg.head)
    cfg.to_json()


def check_method_options(cfg: RunConfig) -> None:
    """The options given are ones the method has, of their declared type and range (the method's own declaration,
    methods/options.py): ``steps: 1.5`` from a run file or the API is refused as ``--steps 1.5`` is. The values
    themselves stay as given, so the configuration and its run folder name do not change; the engine checks them
    again with the suite's defaults under them."""
    from .device import planned_device
    from .methods import METHODS

    METHODS.get(cfg.method).build_options(dict(cfg.method_options), cfg.teacher, planned_device(cfg.device))

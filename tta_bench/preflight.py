"""A run configuration checked before anything is written, the same way for every entry point (the command line,
``--dry-run`` included, run files, sweep runs, the Python API): its fields (RunConfig.validate), the method and the
types of its options (the method's own options dataclass), the teacher's name and files, and that config.json can
record it. Whatever fails here fails in one line, with no run folder left behind."""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

from .config import RunConfig, convert, hints
from .errors import UserError


def preflight(cfg: RunConfig, names: Literal["flags", "fields"] = "flags") -> None:
    """UserError for the first thing wrong with ``cfg``; ``names``: how fields are named in the message (by flag on
    the command line, by field name for run files and the API)."""
    from .teachers.names import check_teacher

    cfg.validate(names)
    check_method_options(cfg)
    check_teacher(cfg.teacher, cfg.weights, cfg.head)
    cfg.to_json()


def check_method_options(cfg: RunConfig) -> None:
    """Every method option is one the method has, of its declared type: ``steps: 1.5`` from a run file or the API is
    refused as ``--steps 1.5`` is (command-line text is converted; the values themselves stay as given, so the
    configuration and its run folder name do not change). Bounds are the method's own check, when it is built."""
    from .methods import METHODS

    method = METHODS.get(cfg.method)  # unknown: the registry's error with the choices
    options = {f.name for f in dataclasses.fields(method.options_class)}
    unknown = sorted(set(cfg.method_options) - options)
    if unknown:
        raise UserError(f"method {cfg.method} has no option(s) {unknown}; it accepts: {', '.join(sorted(options))}")
    flags = {k.key: k.spelling for f in dataclasses.fields(RunConfig) for k in f.metadata["keys"]}
    for key, value in cfg.method_options.items():
        name = flags.get(key, f"{cfg.method} option {key}")
        typed = convert(hints(method.options_class)[key], value, name)
        if isinstance(typed, float) and not math.isfinite(typed):
            raise UserError(f"{name} must be a finite number, got {value}")

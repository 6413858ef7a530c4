"""Run configurations as files: one schema, the RunConfig fields, for a run file (``--config run.yaml``), a recorded
run's ``config.json`` (``--config RUN_DIR/config.json`` reruns it exactly) and every layer of a sweep file (base,
grid cells, overrides).

Layers are applied in order, later ones winning; ``method_options`` merges key by key instead of being replaced, so
``--lr 0.01`` on top of a file that sets ``method_options: {steps: 10}`` keeps both. Every key is checked before
anything runs, with a hint where the command-line spelling differs from the field (``workers`` -> ``num_workers``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .config import RunConfig
from .errors import UserError
from .vocabulary import CONFIG

FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
MERGED = frozenset({"method_options"})  # dict fields: later layers add keys instead of replacing the dict
# command-line options whose RunConfig field has another name (method options live in method_options)
RENAMED = {"workers": "num_workers"}
OPTION_FLAGS = {"steps": "steps", "lr": "lr", "reset": "reset", "apm_preset": "preset"}
HINTS = {**RENAMED,
         **{flag: f"method_options: {{{key}: ...}}" for flag, key in OPTION_FLAGS.items()},
         "opt": "method_options: {KEY: VALUE}", "seeds": "one file per seed, or a sweep with grid: {seed: [...]}"}


def check_fields(keys: Iterable[str], where: str, origin: str, allowed: tuple[str, ...] = FIELDS) -> None:
    """UserError naming every key of ``keys`` not in ``allowed``, with the field a command-line spelling means."""
    bad = sorted(set(keys) - set(allowed))
    if not bad:
        return
    hints = [f"{key!r} is {HINTS[key.replace('-', '_')]}" for key in bad if key.replace("-", "_") in HINTS]
    kind = "RunConfig fields" if set(allowed) <= set(FIELDS) else "one of"
    if "out" in bad and kind == "RunConfig fields":
        hints.append("each run's folder is chosen by the sweep; use --out for the sweep folder")
    raise UserError(f"{origin}: unknown key(s) {', '.join(map(repr, bad))} in {where}"
                    + (f" ({'; '.join(hints)})" if hints else "") + f"; expected {kind}: {', '.join(allowed)}")


def layer(values: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with ``changes`` on top; dict fields (method_options) merge key by key."""
    out = dict(values)
    for k, v in changes.items():
        out[k] = {**(out.get(k) or {}), **v} if k in MERGED and isinstance(v, dict) else v
    return out


def read_run_file(path: str | Path) -> dict[str, Any]:
    """The fields of a run file: YAML (or JSON, which YAML reads), or a run folder's config.json when given the
    folder. Validated against RunConfig; nothing in the file is executed."""
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read run file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of RunConfig fields, got {type(data).__name__}")
    check_fields(data, "the run file", str(path))
    if not isinstance(data.get("method_options") or {}, dict):
        raise UserError(f"{path}: method_options must be a mapping (KEY: VALUE)")
    return data


def given_options(make_parser: Callable[[], argparse.ArgumentParser], argv: list[str]) -> set[str]:
    """The destinations of the options actually typed on the command line, not filled from defaults (a fresh
    parser from ``make_parser`` with every default suppressed)."""
    parser = make_parser()
    for action in parser._actions:  # argparse has no public list of its actions
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def command_line_fields(args: argparse.Namespace, given: set[str], full: RunConfig) -> dict[str, Any]:
    """The RunConfig fields that options typed on the command line set (``full`` is the config the command line
    alone gives); method options only for the keys typed."""
    fields: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for dest in given:
        if dest == "opt":
            options |= {k: full.method_options[k] for k in _opt_keys(args.opt)}
        elif dest in OPTION_FLAGS:
            options[OPTION_FLAGS[dest]] = full.method_options[OPTION_FLAGS[dest]]
        elif RENAMED.get(dest, dest) in FIELDS:
            fields[RENAMED.get(dest, dest)] = getattr(full, RENAMED.get(dest, dest))
    return fields | ({"method_options": options} if options else {})


def _opt_keys(items: list[str]) -> list[str]:
    return [item.partition("=")[0].strip().replace("-", "_") for item in items]


def config_from_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """RunConfig defaults, then the file, then ``overrides`` (the command line's fields)."""
    return RunConfig.from_mapping(layer(read_run_file(path), overrides or {}), str(path))


PATH_FIELDS = ("data_root", "source_data")  # folders a run reads; ids of Hub datasets stay as they are


def resolved(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its data folders absolute (where they exist), so that config.json and summary.json say which
    data a run read, whatever folder it was started from, and a rerun from elsewhere finds it."""
    changes = {}
    for name in PATH_FIELDS:
        value = getattr(cfg, name)
        if value and os.path.exists(os.path.expanduser(value)):
            changes[name] = os.path.abspath(os.path.expanduser(value))
    return dataclasses.replace(cfg, **changes) if changes else cfg

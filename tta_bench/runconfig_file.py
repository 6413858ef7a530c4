"""Run configurations as files: one schema, the RunConfig fields, for a run file (``--config run.yaml``), a recorded
run's ``config.json`` (``--config RUN_DIR/config.json`` reruns it exactly) and every layer of a sweep file (base,
grid cells, overrides).

Layers are applied in order, later ones winning; a mapping field (``method_options``) merges key by key instead of
being replaced, so ``--lr 0.01`` on top of a file that sets ``method_options: {steps: 10}`` keeps both. Every key is
checked before anything runs, with a hint where the command-line spelling differs from the field (``workers`` ->
``num_workers``). Files are read as data only: YAML through a safe loader that also refuses duplicate keys and
documents whose aliases expand beyond MAX_NODES nodes (a few hundred bytes can otherwise stand for billions).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .config import RunConfig, field_map, spelling, typed_values
from .errors import UserError
from .vocabulary import CONFIG

FIELDS = tuple(field_map())
MERGED = frozenset(f.name for f in dataclasses.fields(RunConfig) if f.metadata["keys"])  # merged key by key
COMMAND_ONLY = {"seeds": "one file per seed, or a sweep with grid: {seed: [...]}",
                "config": "a command-line option: a run file names no other", "dry_run": "a command-line option, not a field",
                "no_progress": "a command-line option, not a field"}
MAX_NODES = 100_000  # YAML nodes a document may expand to (aliases counted each time they are used)


def _hints() -> dict[str, str]:
    """Command-line spellings that are not field names -> what they are in a file (from the field metadata)."""
    out = dict(COMMAND_ONLY)
    for f in dataclasses.fields(RunConfig):
        bare = spelling(f).lstrip("-").replace("-", "_")
        if f.metadata["keys"]:
            out[bare] = f"{f.name}: {{KEY: VALUE}}"
            out |= {k.spelling.lstrip("-").replace("-", "_"): f"{f.name}: {{{k.key}: ...}}" for k in f.metadata["keys"]}
        elif bare != f.name:
            out[bare] = f.name
        out |= {alias.lstrip("-").replace("-", "_"): f.name for alias, _ in f.metadata["aliases"]}
    return out


HINTS = _hints()


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
    """``values`` with ``changes`` on top; mapping fields (method_options) merge key by key."""
    out = dict(values)
    for k, v in changes.items():
        out[k] = {**(out.get(k) or {}), **v} if k in MERGED and isinstance(v, dict) else v
    return out


def read_run_file(path: str | Path) -> dict[str, Any]:
    """The fields of a run file, typed (RunConfig.build's conversion, paths made absolute): YAML (or JSON), or a
    run folder's config.json when given the folder. Nothing in the file is executed."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read run file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    data = load_json(text, str(path)) if path.suffix == ".json" else load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of RunConfig fields, got {type(data).__name__}")
    check_fields(data, "the run file", str(path))
    return typed_values(data, str(path))


def config_from_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """RunConfig defaults, then the file, then ``overrides``."""
    return RunConfig.build(layer(read_run_file(path), overrides or {}), str(path))


# -- reading files as data -------------------------------------------------------------------------------------
class _Refused(yaml.YAMLError):
    """A well-formed document this reader will not take (its message is one line)."""


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing duplicate keys (the last would silently win) and alias bombs."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a key that cannot be hashed: the base constructor's own error
            if (type(key), key) in seen:
                raise _Refused(f"duplicate key {key!r} (line {key_node.start_mark.line + 1}): give each key once")
            seen.add((type(key), key))
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document stands for once every alias is expanded, counted without expanding (each
    distinct node's size is computed once); refused beyond MAX_NODES or when a node contains itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise _Refused("an alias refers to a node that contains it")
        open_nodes.add(id(node))
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        total = 1 + sum(size(child) for child in children)
        if total > MAX_NODES:
            raise _Refused(f"the document expands to more than {MAX_NODES:,} values (aliases counted each time they "
                           "are used); a run or sweep file needs far fewer")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def load_yaml(text: str, origin: str) -> Any:
    """A YAML document as plain data (mappings, lists, scalars), or a one-line UserError naming ``origin``."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except _Refused as exc:
        raise UserError(f"{origin}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{origin}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise UserError(f"{origin}: nested too deeply to be a run or sweep file") from None


def load_json(text: str, origin: str) -> Any:
    """A JSON document, refusing duplicate keys, or a one-line UserError naming ``origin``."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise UserError(f"{origin}: duplicate key(s) {', '.join(map(repr, repeated))}: give each key once")
        return dict(items)

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        raise UserError(f"{origin}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{origin}: nested too deeply to be a run file") from None

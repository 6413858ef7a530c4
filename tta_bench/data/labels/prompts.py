"""Text prompts for CLIP heads: ``single``, ``ensemble`` (CLIP's templates of the label space), ``coop`` (CoOp's
hand-crafted prompt of a fine-grained dataset: KaiyangZhou/CoOp trainers/zsclip.py CUSTOM_TEMPLATES), or a file.

A file is either templates (one per line, each with exactly one ``{}``) or a JSON object mapping class names
to their own prompts (CuPL style: sarahpratt/CuPL's generated JSON files). Files are validated at load so a typo
stops the run before any model work. Each class's prompts are embedded and their normalised mean is the class
weight, as openai/CLIP's ImageNet notebook ``zeroshot_classifier`` does (teachers/clip.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...errors import UserError
from . import PROMPT_SPECS, LabelSpace, prompt_templates


def class_prompts(spec: str, space: LabelSpace, classes: Sequence[int]) -> list[list[str]]:
    """One list of prompt strings per evaluated class (aligned with ``classes``)."""
    if spec in PROMPT_SPECS:
        templates = prompt_templates(spec, space.name)
        return [[t.format(space.names[c]) for t in templates] for c in classes]
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--prompts must be {', '.join(PROMPT_SPECS)} or a prompt file; {path} does not exist")
    if path.suffix == ".json":
        return _cupl(path, space, classes)
    templates = _templates(path)
    return [[t.format(space.names[c]) for t in templates] for c in classes]


def _templates(path: Path) -> list[str]:
    templates = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.count("{}") != 1 or line.replace("{}", "").count("{") or line.replace("{}", "").count("}"):
            raise UserError(f"{path}:{number}: a template needs exactly one '{{}}' for the class name: {line!r}")
        templates.append(line)
    if not templates:
        raise UserError(f"{path}: no templates (one per line, each with one '{{}}')")
    return templates


def _cupl(path: Path, space: LabelSpace, classes: Sequence[int]) -> list[list[str]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object mapping class name -> list of prompts")
    out = []
    for c in classes:
        prompts = data.get(space.names[c], data.get(space.keys[c]))
        if prompts is None:
            raise UserError(f"{path}: class {space.names[c]!r} ({space.keys[c]}) has no prompts; "
                            "every class of the suite needs an entry (by class name or key)")
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise UserError(f"{path}: prompts of {space.names[c]!r} must be a non-empty list of strings")
        out.append(prompts)
    return out


def file_hash(spec: str | None) -> str | None:
    """SHA-256 of a prompt file; None for a named template set."""
    from ...files import file_sha256

    if spec is None or spec in PROMPT_SPECS or not Path(spec).is_file():
        return None
    return file_sha256(spec)

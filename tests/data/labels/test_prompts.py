"""Prompt files are validated at load: the error names the first bad line or the missing class."""
from __future__ import annotations

import json

import pytest

from tta_bench.data.labels import label_space
from tta_bench.data.labels.prompts import class_prompts, file_hash
from tta_bench.errors import UserError

CIFAR = label_space("cifar10")


def test_template_file_expands_per_class(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a photo of a {}.\n\nart of the {}.\n")
    prompts = class_prompts(str(path), CIFAR, [0, 3])
    assert prompts == [["a photo of a airplane.", "art of the airplane."], ["a photo of a cat.", "art of the cat."]]
    assert file_hash(str(path)) and file_hash("single") is None


@pytest.mark.parametrize("bad", ["no placeholder here", "two {} and {}", "broken { brace {}"])
def test_template_file_names_the_first_bad_line(tmp_path, bad):
    path = tmp_path / "t.txt"
    path.write_text(f"a photo of a {{}}.\n{bad}\n")
    with pytest.raises(UserError, match=r"t\.txt:2"):
        class_prompts(str(path), CIFAR, range(10))


def test_cupl_json_needs_every_class(tmp_path):
    path = tmp_path / "p.json"
    data = {name: [f"a {name}", f"the {name}"] for name in CIFAR.names}
    path.write_text(json.dumps(data))
    assert class_prompts(str(path), CIFAR, [1]) == [["a automobile", "the automobile"]]
    del data["cat"]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="'cat'"):
        class_prompts(str(path), CIFAR, range(10))
    assert class_prompts(str(path), CIFAR, [0, 1])  # a suite without cats is fine


def test_unknown_prompt_spec_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="single, apm, ensemble, coop, tip or a prompt file"):
        class_prompts(str(tmp_path / "missing.txt"), CIFAR, range(10))


def test_fine_grained_suites_have_coops_prompt_and_clips_own_ensemble():
    pets, dtd = label_space("pets"), label_space("dtd")
    assert class_prompts("coop", pets, [1]) == [["a photo of a american bulldog, a type of pet."]]
    assert class_prompts("single", pets, [1]) == [["a photo of a american bulldog."]]
    ensemble = class_prompts("ensemble", dtd, [0])[0]
    assert len(ensemble) == 8 and ensemble[0] == "a photo of a banded texture."
    assert len(class_prompts("ensemble", label_space("imagenet1k"), [0])[0]) == 80  # ImageNet keeps its 80
    with pytest.raises(UserError, match="fine-grained"):
        class_prompts("coop", CIFAR, [0])

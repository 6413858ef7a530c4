"""Label spaces: standard class orders and names, and prompt templates."""
from __future__ import annotations

import hashlib

import pytest

from conftest import SHARED, needs_shared
from tta_bench.data.labels import class_list, label_space, prompt_templates
from tta_bench.errors import DataError


def test_imagenet_is_the_1000_sorted_wnids_with_clip_class_names():
    space = label_space("imagenet1k")
    assert len(space) == 1000 and len(space.names) == 1000
    assert list(space.keys) == sorted(space.keys) and len(set(space.keys)) == 1000
    assert space.keys[0] == "n01440764" and space.names[0] == "tench"
    assert space.index_of("n02123045") == 281 and space.names[281] == "tabby cat"


def test_cifar_spaces_follow_the_standard_index_order():
    cifar10 = label_space("cifar10")
    assert cifar10.keys == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    cifar100 = label_space("cifar100")
    assert len(cifar100) == 100 and list(cifar100.keys) == sorted(cifar100.keys)
    assert cifar100.keys[1] == "aquarium_fish" and cifar100.names[1] == "aquarium fish"
    assert cifar100.index_of("worm") == 99


@needs_shared
def test_cifar10_order_matches_the_real_class_folders():
    folders = sorted(p.name for p in (SHARED / "cifar10-test-jpeg").iterdir() if p.is_dir())
    assert tuple(folders) == label_space("cifar10").keys


def test_unknown_keys_and_spaces_are_user_errors():
    with pytest.raises(DataError, match=r"'n99999999' in /some/where is not a imagenet1k class"):
        label_space("imagenet1k").index_of("n99999999", "/some/where")
    with pytest.raises(DataError, match="unknown label space 'svhn'"):
        label_space("svhn")


def test_prompt_templates():
    assert prompt_templates("single") == ("a photo of a {}.",)
    ensemble = prompt_templates("ensemble")
    assert len(ensemble) == 80 and all("{}" in t for t in ensemble)
    with pytest.raises(DataError, match="expected one of single, apm, ensemble, coop"):
        prompt_templates("many")


# sha256 of the newline-joined wnids as extracted from TPT data/imagenet_variants.py (ImageNet-R: imagenet_r_wnids;
# ImageNet-A: the ImageNet-1k indices of thousand_k_to_200), equal in MEMO, CLIP_benchmark and the unified benchmark
REFERENCE_SHA256 = {"imagenet-r": "e19a59d84e3746fafd34d2ccf6ae604a44e9a0500a596f343c878a89e30ce624",
                    "imagenet-a": "f6aa4b23244554d9b864fd715ae20048f6a9686388911b2dfbf1ada01bf0f520"}


@pytest.mark.parametrize("name", ["imagenet-r", "imagenet-a"])
def test_class_lists_are_the_reference_codes_200_wnids(name):
    wnids = class_list(name)
    assert len(wnids) == 200 == len(set(wnids)) and list(wnids) == sorted(wnids)
    assert all(w in label_space("imagenet1k") for w in wnids)
    assert hashlib.sha256("\n".join(wnids).encode()).hexdigest() == REFERENCE_SHA256[name]


def test_the_two_lists_are_different_subsets():
    assert len(set(class_list("imagenet-r")) & set(class_list("imagenet-a"))) == 86
    with pytest.raises(DataError, match="unknown class list 'imagenet-o'"):
        class_list("imagenet-o")


def test_imagenet_classes_carry_their_wordnet_lemmas():
    space = label_space("imagenet1k")
    assert space.synonyms[0] == ("tench", "Tinca tinca") and "tabby cat" in space.synonyms[281]




def test_fine_grained_and_domainnet_spaces_have_their_published_class_counts():
    sizes = {"flowers102": 102, "dtd": 47, "pets": 37, "cars": 196, "ucf101": 101, "caltech101": 100,
             "food101": 101, "sun397": 397, "aircraft": 100, "eurosat": 10, "domainnet126": 126}
    for name, n in sizes.items():
        space = label_space(name)
        assert len(space) == n and len(set(space.keys)) == n, name
    assert label_space("pets").names[1] == "american bulldog"  # CoOp and TPT read '_' as a space
    assert label_space("flowers102").keys[0] == "pink primrose" and label_space("aircraft").keys[0] == "707-320"
    assert prompt_templates("coop", "eurosat") == ("a centered satellite photo of {}.",)

"""Release files downloaded into the cache on first use and verified by the SHA-256 prefix their names carry:
served from local files (file:// URLs), so no network is needed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import SHARED, needs_shared
from tta_bench import downloads
from tta_bench.errors import UserError
from tta_bench.files import file_sha256
from tta_bench.teachers.cifar_resnet import CifarResNet


def release(folder: Path, stem: str = "resnet20") -> tuple[Path, torch.nn.Module]:
    """A CIFAR ResNet-20 checkpoint named as releases are: <stem>-<its own sha256 prefix>.th."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = CifarResNet(20).eval()
    raw = folder / "raw.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, raw)
    named = raw.rename(folder / f"{stem}-{file_sha256(raw)[:8]}.th")
    return named, model


def test_a_release_file_is_downloaded_once_into_the_cache(tmp_path):
    served, _ = release(tmp_path / "server")
    path = downloads.cached_file(served.as_uri(), "a test file", "--weights PATH")
    assert path == downloads.cache_dir() / "weights" / served.name
    assert path.read_bytes() == served.read_bytes()
    served.unlink()  # gone from the "server": the cached copy is used, nothing is fetched
    assert downloads.cached_file(served.as_uri(), "a test file", "--weights PATH") == path


def test_a_download_whose_content_does_not_match_its_name_is_refused_and_not_kept(tmp_path):
    served, _ = release(tmp_path / "server")
    swapped = served.with_name("resnet20-12fca82f.th")  # the real release's name, other content
    shutil.copyfile(served, swapped)
    with pytest.raises(UserError, match=r"refused the download of a test file .* hashes to [0-9a-f]{8}, not the "
                                        r"12fca82f its name carries .* offline alternative: --weights PATH"):
        downloads.cached_file(swapped.as_uri(), "a test file", "--weights PATH")
    assert not list((downloads.cache_dir() / "weights").iterdir())  # neither the file nor a partial one


def test_a_download_that_fails_names_the_offline_alternative(tmp_path):
    with pytest.raises(UserError, match=r"could not download the weights .* offline alternative: --weights PATH"):
        downloads.cached_file((tmp_path / "missing-0123abcd.th").as_uri(), "the weights", "--weights PATH")


@needs_shared
def test_the_published_resnet20_file_passes_the_check_of_its_name(monkeypatch):
    real = SHARED / "weights" / "resnet20-12fca82f.th"
    assert downloads.WEIGHTS["cifar-resnet20"].rsplit("/", 1)[-1] == real.name  # the URL names this very file
    monkeypatch.setitem(downloads.WEIGHTS, "cifar-resnet20", real.as_uri())
    assert downloads.teacher_weights("cifar-resnet20").read_bytes() == real.read_bytes()

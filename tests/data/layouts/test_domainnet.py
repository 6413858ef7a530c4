"""DomainNet-126 on a generated layout: image lists read and checked, domains as splits in the order asked (or the
unified benchmark's sequence for a checkpoint's source domain), and the stream settings across domains."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_images
from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data.build import load_suite
from tta_bench.data.layouts.domainnet import source_domain
from tta_bench.data.labels import label_space
from tta_bench.errors import DataError, UserError
from tta_bench.vocabulary import PREDICTIONS

SPACE = label_space("domainnet126")
CLASSES = (0, 7, 125)  # aircraft_carrier, basket, zebra


def write_domainnet(root: Path, per_class: int = 2) -> Path:
    for domain in ("real", "clipart", "painting", "sketch"):
        paths = write_images(root, {f"{domain}/{SPACE.keys[c]}": per_class for c in CLASSES}, suffix=".jpg")
        lines = [f"{p.relative_to(root).as_posix()} {SPACE.index_of(p.parent.name)}" for p in paths]
        (root / f"{domain}_list.txt").write_text("\n".join(lines) + "\n")
    return root


def _load(root: Path, **kw):
    return load_suite(RunConfig(suite="domainnet126", data_root=str(root), allow_partial=True, **kw))


def test_the_126_classes_in_the_lists_label_order():
    assert len(SPACE) == 126 and SPACE.keys[0] == "aircraft_carrier" and SPACE.keys[-1] == "zebra"
    assert SPACE.names[SPACE.index_of("The_Eiffel_Tower")] == "The Eiffel Tower"


def test_domains_are_splits_with_the_lists_labels(tmp_path):
    root = write_domainnet(tmp_path)
    data = _load(root)
    assert [s.name for s in data.splits] == ["real", "clipart", "painting", "sketch"]
    clipart = data.splits[1].source
    assert clipart.ids[0] == "clipart/aircraft_carrier/img_000.jpg"
    assert clipart.labels == [0, 0, 7, 7, 125, 125]
    assert clipart.load(0).mode == "RGB"
    assert data.partial and "real: found 6 images in 3 classes, expected 69,622 in 126" in data.notes


def test_domains_run_in_the_order_asked_or_after_the_checkpoints_source_domain(tmp_path):
    root = write_domainnet(tmp_path)
    assert [s.name for s in _load(root, corruptions=["sketch", "real"]).splits] == ["sketch", "real"]
    assert source_domain("ckpt/domainnet126/best_painting_2020.pth") == "painting"
    data = _load(root, weights=str(tmp_path / "best_painting_2020.pth"))
    assert [s.name for s in data.splits] == ["real", "sketch", "clipart"]
    assert any("source domain painting" in note for note in data.notes)
    with pytest.raises(UserError, match="unknown domain"):
        _load(root, corruptions=["quickdraw"])
    with pytest.raises(UserError, match="severities"):
        _load(root, setting="gradual", severities=[1, 2, 3, 4, 5])


def test_a_list_line_of_another_class_or_domain_is_refused(tmp_path):
    root = write_domainnet(tmp_path)
    lines = (root / "sketch_list.txt").read_text().splitlines()
    lines[0] = lines[0].replace(" 0", " 3")
    (root / "sketch_list.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match="sketch_list.txt:1.*label 3 is 'anvil'"):
        _load(root, corruptions=["sketch"])
    (root / "real_list.txt").unlink()
    with pytest.raises(DataError, match="no image list for domain real"):
        _load(root, corruptions=["real"])


def test_a_duplicate_line_of_an_image_list_is_refused(tmp_path):
    """Seven planned samples would have written six records, silently."""
    root = write_domainnet(tmp_path)
    lines = (root / "real_list.txt").read_text().splitlines()
    (root / "real_list.txt").write_text("\n".join(lines + lines[:1]) + "\n")
    with pytest.raises(DataError, match=r"real_list.txt: 'real/aircraft_carrier/img_000.jpg' is listed twice "
                                        r"\(line 1 and line 7\)"):
        _load(root, corruptions=["real"])


def test_a_domain_asked_for_twice_is_refused(tmp_path):
    root = write_domainnet(tmp_path)
    with pytest.raises(UserError, match="split clipart is asked for twice"):
        _load(root, corruptions=["clipart", "painting", "clipart"])


@pytest.mark.parametrize("setting", ["reset_each_shift", "continual", "mixed_domains", "correlated"])
def test_every_stream_setting_runs_across_the_domains(tmp_path, setting):
    root = write_domainnet(tmp_path / "data")
    cfg = RunConfig(suite="domainnet126", data_root=str(root), allow_partial=True, teacher="tiny", method="bn_adapt",
                    corruptions=["clipart", "painting", "sketch"], setting=setting, batch_size=4, num_workers=0,
                    device="cpu", out=str(tmp_path / "run"))
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert set(summary["splits"]) == {"clipart", "painting", "sketch"}
    assert all(summary["splits"][d]["n"] == 6 for d in ("clipart", "painting", "sketch"))
    records = [json.loads(line) for line in (tmp_path / "run" / PREDICTIONS).read_text().splitlines()]
    assert {r["split"] for r in records} == {"clipart", "painting", "sketch"} and len(records) == 18

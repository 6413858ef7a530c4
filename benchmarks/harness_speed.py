"""The harness end to end against a bare loop: images/s of `run_bench.py --method source` and `--method tent` on an
ImageNet-C-shaped folder, beside a bare torchvision ImageFolder + DataLoader loop over the same files with the same
model, DataLoader workers, batch size and device. Goal: the harness at >= 0.9 of the bare loop.

The folder (built once, under --folder): `--per-split` photographs of ../shared/data/imagenet-sample cut as
ImageNet-C cuts them (resize 256, centre crop 224), with Gaussian noise of severity 5 (ImageNet-C's sigma 0.38)
and saved as JPEG (quality 85), in `<corruption>/5/<wnid>/*.JPEG`. Every corruption name holds the same noisy crops
(hard links): what is measured is reading, decoding, the model and the harness's own work, not the corruption.

Each measurement runs in a process of its own (thread settings and caches do not carry over); its time starts
before the model is built and the folder listed, and ends when the last batch is done (the harness: `engine.run`
whole, records and summary written). The bare loop uses the model the harness uses (tta_bench's EfficientNet-Lite0
teacher, normalising inside), in the harness's layout (channels_last on a CPU) and thread budget (CPU threads =
cores - workers), so that only the harness's own work differs: stream, records, resume bookkeeping, summary.
TENT in the bare loop: BN layers on batch statistics, their scale and shift trained by SGD (lr 0.00025, momentum
0.9, Nesterov) on the batch's mean prediction entropy, one step a batch, predictions from that forward.

    python benchmarks/harness_speed.py --device cuda                     # a CUDA machine: 20 x 500 images
    python benchmarks/harness_speed.py --device cpu --splits 1 --per-split 250 --workers 1 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("TTA_BENCH_SHARED_DATA") or ROOT.parent / "shared" / "data")
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
SIGMA = 0.38  # ImageNet-C gaussian_noise, severity 5
TENT_LR, TENT_MOMENTUM = 0.00025, 0.9


def build_folder(folder: Path, photos: Path, splits: int, per_split: int) -> list[str]:
    """The ImageNet-C-shaped folder (reused when it already holds what is asked); returns the split names."""
    names = [CORRUPTIONS[i % len(CORRUPTIONS)] + ("" if i < len(CORRUPTIONS) else f"_{i // len(CORRUPTIONS)}")
             for i in range(splits)]
    stamp = folder / "BUILT"
    wanted = json.dumps({"splits": names, "per_split": per_split, "photos": str(photos)})
    if stamp.is_file() and stamp.read_text() == wanted:
        return names
    files = sorted(photos.glob("*/*.JPEG"))
    if len(files) < per_split:
        raise SystemExit(f"error: {photos} holds {len(files)} photographs, --per-split asks for {per_split}")
    chosen = [files[round(i * len(files) / per_split)] for i in range(per_split)]  # evenly spread
    rng = np.random.default_rng(0)
    first = folder / names[0] / "5"
    for path in chosen:
        image = Image.open(path).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
        noisy = np.clip(x + rng.normal(size=x.shape, scale=SIGMA), 0, 1)
        (first / path.parent.name).mkdir(parents=True, exist_ok=True)
        Image.fromarray((noisy * 255).round().astype(np.uint8)).save(first / path.parent.name / path.name, quality=85)
    for name in names[1:]:
        for src in first.glob("*/*.JPEG"):
            dst = folder / name / "5" / src.parent.name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.link(src, dst)
    stamp.write_text(wanted)
    return names


def harness_run(a: argparse.Namespace, names: list[str], method: str) -> dict:
    from tta_bench import engine
    from tta_bench.config import RunConfig

    with tempfile.TemporaryDirectory() as out:
        cfg = RunConfig(suite="imagenet-c", source="published", data_root=str(a.folder), corruptions=names,
                        severities=[5], method=method, teacher="effnet-lite0", batch_size=a.batch,
                        num_workers=a.workers, device=a.device, allow_partial=True, out=out)
        start = time.perf_counter()
        summary = engine.run(cfg, progress=False, log=lambda _: None)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": summary["cost"]["samples"], "top1": summary["mean_top1"]}


class ImageNetIndex:
    """ImageFolder's class number (its sorted wnids) -> the wnid's ImageNet-1k index (picklable for workers)."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __call__(self, target: int) -> int:
        return self.indices[target]


def bare_run(a: argparse.Namespace, names: list[str], method: str) -> dict:
    """A plain torchvision loop: ImageFolder per split, one DataLoader over them, the model, top-1 against the
    wnid's ImageNet index."""
    import torch
    from torch.utils.data import ConcatDataset, DataLoader
    from torchvision import datasets, transforms

    from tta_bench.data.labels import label_space
    from tta_bench.teachers import build_teacher

    device = torch.device(a.device)
    cpu = device.type == "cpu"
    if cpu and a.workers:  # the harness's thread budget on a CPU: the decoding workers keep their cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - a.workers))
    start = time.perf_counter()
    space = label_space("imagenet1k")
    model = build_teacher("effnet-lite0").to(device).eval().requires_grad_(False)
    model.set_classes(space, range(1000))  # its own 1000-class head
    layout = torch.channels_last if cpu else torch.contiguous_format  # the harness's layout for a CNN
    model.to(memory_format=layout)
    index = {wnid: i for i, wnid in enumerate(space.keys)}
    parts = []
    for name in names:
        part = datasets.ImageFolder(str(a.folder / name / "5"), transforms.ToTensor())
        part.target_transform = ImageNetIndex([index[wnid] for wnid in part.classes])
        parts.append(part)
    # shuffled, as the harness plays folder layouts (its own seeded order: TENT's top-1 may differ by a sample or two)
    loader = DataLoader(ConcatDataset(parts), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        pin_memory=not cpu, generator=torch.Generator().manual_seed(0))
    step = None
    if method == "tent":
        params = []
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.train()
                m.track_running_stats, m.running_mean, m.running_var = False, None, None
                params += [m.weight, m.bias]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.SGD(params, lr=TENT_LR, momentum=TENT_MOMENTUM, nesterov=True)

        def step(x: torch.Tensor) -> torch.Tensor:
            logits = model(x)
            log_p = logits.float().log_softmax(1)
            (-(log_p.exp() * log_p).sum(1)).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return logits.detach()

    correct = seen = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
        if step is None:
            with torch.no_grad():
                logits = model(x)
        else:
            logits = step(x)
        correct += int((logits.argmax(1).cpu() == y).sum())
        seen += len(y)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": seen, "top1": 100 * correct / seen}


def one(a: argparse.Namespace) -> None:
    kind, method = a.one.split(":")
    names = json.loads(a.names)
    result = (harness_run if kind == "harness" else bare_run)(a, names, method)
    print(json.dumps(result))


def spawn(a: argparse.Namespace, names: list[str], kind: str, method: str) -> dict:
    command = [sys.executable, __file__, "--one", f"{kind}:{method}", "--names", json.dumps(names),
               "--folder", str(a.folder), "--device", a.device, "--workers", str(a.workers), "--batch", str(a.batch)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"error: {kind} {method} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from apm_ttt import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(8, cores))")
    p.add_argument("--batch", type=int, default=64, help="batch size (the ImageNet default of source and TENT)")
    p.add_argument("--splits", type=int, default=20, help="corruption folders (default 20)")
    p.add_argument("--per-split", type=int, default=500, help="images in each (default 500: all photographs)")
    p.add_argument("--photos", type=Path, default=SHARED / "imagenet-sample")
    p.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "tta_bench_imagenet_c_224")
    p.add_argument("--methods", default="source,tent")
    p.add_argument("--repeat", type=int, default=1, help="measurements of each, interleaved; the median is kept")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement in this process
    p.add_argument("--names", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.workers = min(8, os.cpu_count() or 1) if a.workers is None else a.workers
    if a.one:
        return one(a)
    t0 = time.perf_counter()
    names = build_folder(a.folder, a.photos, a.splits, a.per_split)
    print(f"{len(names)} splits x {a.per_split} images of 224 px at {a.folder} ({time.perf_counter() - t0:.0f} s); "
          f"device {a.device} ({device_name(a.device)}), {a.workers} workers, batch {a.batch}", flush=True)
    spawn(a, names[:1], "bare", "source")  # warm-up: page cache, kernels' first use
    out = {"device": device_name(a.device), "workers": a.workers, "batch": a.batch, "images": len(names) * a.per_split,
           "repeat": a.repeat, "methods": {}}
    for method in a.methods.split(","):
        runs = {"bare": [], "harness": []}
        for _ in range(a.repeat):
            for kind in runs:
                runs[kind].append(spawn(a, names, kind, method))
                r = runs[kind][-1]
                print(f"  {method} {kind}: {r['images']} images in {r['seconds']:.2f} s = "
                      f"{r['images'] / r['seconds']:.1f} images/s (top-1 {r['top1']:.1f})", flush=True)
        rate = {k: statistics.median(r["images"] / r["seconds"] for r in v) for k, v in runs.items()}
        out["methods"][method] = {"bare_images_per_second": round(rate["bare"], 2),
                                  "harness_images_per_second": round(rate["harness"], 2),
                                  "ratio": round(rate["harness"] / rate["bare"], 3),
                                  "top1": {k: round(v[-1]["top1"], 2) for k, v in runs.items()}}
        m = out["methods"][method]
        print(f"{method}: harness {m['harness_images_per_second']:.1f} images/s, bare loop "
              f"{m['bare_images_per_second']:.1f}: {m['ratio']:.2f} of the bare loop (goal >= 0.9)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

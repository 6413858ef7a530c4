"""APM test-time-training speed: this implementation against the official demo loop's protocol, same config, same
machine, one process; and the peak memory of a forward pass against the query chunk size K.

The official loop is re-implemented here from its description (shared/reference/apm-and-peers.md), with the same
student network and teacher code, so that only the protocol differs:
  - the image and the target are repeated 8 times per step (8 identical copies through the student),
  - the teacher's image feature and the text embeddings of every class are recomputed at every step, the class
    prompts ("a photo of a {class}") tokenised and encoded in one batch, as its demo does,
  - the queries go through the MLP in Python chunks of 16,
  - the prediction (cosine similarity with the class texts) is computed at every step,
  - Adam 1e-4, StepLR(200, 0.1) per iteration, gradients zeroed every step (its accumulation defect is not kept:
    it does not change the cost).
The teacher encodes one copy of the image per step (not 8), and the image is not re-read and resized on the CPU at
every step (the demo does both), so the official side is, if anything, flattered.

Offline there are no CLIP ViT-L/14 weights: both sides use open_clip's ViT-L-14 architecture with random weights
(speed does not depend on the weights); the text re-encoding covers --classes ImageNet classes with one prompt.

TTT steps/s counts sample-steps (our samples adapt together on CUDA). Samples/s is for --project-steps steps per
sample (250, the paper preset's), from the measured time per step plus, for ours, the once-per-sample teacher forward.
Memory: the peak of live tensors a no-grad forward allocates (a dispatch-mode count, the same on any device).

    python benchmarks/apm_ttt.py                       # paper preset; few steps per side on a CPU
    python benchmarks/apm_ttt.py --memory 16,64,256,1024
"""
from __future__ import annotations

import argparse
import platform
import time
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tta_bench.data.labels import label_space, prompt_templates
from tta_bench.methods import build_method
from tta_bench.methods.apm import student_input
from tta_bench.methods.base import Batch
from tta_bench.models.apm_student import APMConfig, APMStudent, preset
from tta_bench.teachers.clip import ClipTeacher

OFFICIAL_COPIES = 8
OFFICIAL_CHUNK = 16
SPACE = label_space("imagenet1k")
PROMPTS = prompt_templates("single")  # our text head's (set once per run)
OFFICIAL_PROMPT = prompt_templates("apm")[0]  # the demo's "a photo of a {c}"


@dataclass
class Timing:
    seconds: float
    steps: int  # per sample


def clip_teacher(arch: str, classes: int, device: torch.device) -> ClipTeacher:
    import open_clip

    model = open_clip.create_model(arch, pretrained=None)
    teacher = ClipTeacher(f"clip:{arch}/random", model, open_clip.get_tokenizer(arch))
    teacher = teacher.to(device).eval().requires_grad_(False)
    teacher.set_classes(SPACE, list(range(classes)), PROMPTS)
    return teacher


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(teacher: ClipTeacher, preset_name: str, steps: int, images: torch.Tensor, device: torch.device) -> Timing:
    """The APM method itself, as the engine calls it (the first call, which also counts FLOPs, is a warm-up)."""
    method = build_method("apm", teacher, {"preset": preset_name, "steps": steps}, device)
    seeds = list(range(len(images)))
    method.predict(Batch(images, seeds))
    sync(device)
    start = time.perf_counter()
    method.predict(Batch(images, seeds))
    sync(device)
    return Timing(time.perf_counter() - start, steps)


def time_teacher(teacher: ClipTeacher, images: torch.Tensor, device: torch.device) -> float:
    with torch.no_grad():
        teacher.encode(images)
        sync(device)
        start = time.perf_counter()
        teacher.encode(images)
        sync(device)
    return time.perf_counter() - start


def official_steps(teacher: ClipTeacher, cfg: APMConfig, image: torch.Tensor, steps: int, classes: int) -> torch.Tensor:
    """The official demo loop's protocol for one sample; returns the last step's logits."""
    texts = [OFFICIAL_PROMPT.format(SPACE.names[c]) for c in range(classes)]
    student = APMStudent(cfg, seed=0).to(image.device)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 200, 0.1)
    copies = student_input(image, cfg).repeat(OFFICIAL_COPIES, 1, 1, 1)
    for _ in range(steps):
        with torch.no_grad():
            target = teacher.encode(image).float()  # the image feature, again at every step
            text = teacher.model.encode_text(teacher.tokenizer(texts).to(image.device))  # every class, one batch
        out = student(copies, chunk_size=OFFICIAL_CHUNK)
        loss = F.mse_loss(out.feature.float(), target.expand(OFFICIAL_COPIES, -1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # the demo's prediction at every step
            logits = 100 * F.normalize(out.feature[:1].float(), dim=-1) @ F.normalize(text.float(), dim=-1).T
    return logits


def time_official(teacher: ClipTeacher, cfg: APMConfig, image: torch.Tensor, steps: int, classes: int,
                  device: torch.device) -> Timing:
    official_steps(teacher, cfg, image, 1, classes)  # warm-up
    sync(device)
    start = time.perf_counter()
    official_steps(teacher, cfg, image, steps, classes)
    sync(device)
    return Timing(time.perf_counter() - start, steps)


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensors that operations allocate and that are still alive (views of existing storage and the
    module's own weights are not allocations): the working set of a pass, on any device, allocator aside."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key and key not in inputs and key not in self.sizes:
                self.sizes[key] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._freed, key)
        return out


def peak_forward_mb(cfg: APMConfig, chunk: int, batch: int, device: torch.device) -> float:
    student = APMStudent(cfg, seed=0).to(device)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    with torch.no_grad(), LiveTensorBytes() as counter:
        student(x, chunk_size=chunk)
    return counter.peak / 2**20


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def speed(a: argparse.Namespace, device: torch.device) -> None:
    teacher = clip_teacher(a.arch, a.classes, device)
    size = teacher.transform(Image.new("RGB", (256, 256))).shape[-1]
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(a.batch, 3, size, size, generator=generator).to(device)
    cfg = preset(a.preset, teacher.feature_dim)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with amp:
        ours = time_ours(teacher, a.preset, a.steps_ours, images, device)
        teacher_s = time_teacher(teacher, images, device)
        official = time_official(teacher, cfg, images[:1], a.steps_official, a.classes, device)
    ours_step = (ours.seconds - teacher_s) / ours.steps  # one step of the whole batch
    official_step = official.seconds / official.steps
    n = a.project_steps
    ours_sps = a.batch / (teacher_s + n * ours_step)
    official_sps = 1 / (n * official_step)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}), "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"preset {a.preset} ({cfg.grid}x{cfg.grid} grid, {cfg.readout} readout), teacher {a.arch} random weights, "
          f"{a.classes} classes re-encoded per official step")
    ours_steps_s, official_steps_s = a.batch / ours_step, 1 / official_step
    print("| implementation | samples together | steps timed | s per step | TTT steps/s (sample-steps) |"
          f" teacher s/sample | samples/s at {n} steps |")
    print("|---|---|---|---|---|---|---|")
    print(f"| tta_bench apm | {a.batch} | {ours.steps} | {ours_step:.3f} | {ours_steps_s:.3f} | "
          f"{teacher_s / a.batch:.3f} (once) | {ours_sps:.5f} |")
    print(f"| official demo protocol | 1 | {official.steps} | {official_step:.3f} | {official_steps_s:.3f} | "
          f"(inside every step) | {official_sps:.5f} |")
    print(f"ratio (ours / official): TTT steps/s {ours_steps_s / official_steps_s:.1f}x, "
          f"samples/s at {n} steps {ours_sps / official_sps:.1f}x")


def memory(a: argparse.Namespace, device: torch.device) -> None:
    grids = a.grid_memory or [preset(a.preset, 768).grid, preset(a.preset, 768).grid // 2]
    print(f"peak memory of one no-grad forward (live tensors it allocates), mean readout, batch {a.memory_batch}, "
          f"float32, {device}")
    print("| grid | locations | " + " | ".join(f"K={k}" for k in a.memory) + " |")
    print("|---|---|" + "---|" * len(a.memory))
    for g in grids:
        cfg = replace(preset(a.preset, 768), grid=g, readout="mean")
        cells = [f"{peak_forward_mb(cfg, k, a.memory_batch, device):.1f} MiB" if k <= cfg.locations else "-"
                 for k in a.memory]
        print(f"| {g} | {cfg.locations} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper")
    p.add_argument("--arch", default="ViT-L-14", help="open_clip architecture of the teacher (random weights)")
    p.add_argument("--classes", type=int, default=None, help="classes whose text the official loop re-encodes per "
                                                            "step (default: 1000 on CUDA, 10 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="samples our method adapts together (default: 32 on "
                                                          "CUDA, 1 on CPU)")
    p.add_argument("--steps-ours", type=int, default=None, help="timed steps (default: 50 on CUDA, 3 on CPU)")
    p.add_argument("--steps-official", type=int, default=None, help="timed steps (default: 20 on CUDA, 2 on CPU)")
    p.add_argument("--project-steps", type=int, default=250, help="steps per sample for the samples/s figure")
    p.add_argument("--memory", type=lambda s: [int(k) for k in s.split(",")], help="chunk sizes K: measure "
                                                                                   "forward peak memory instead")
    p.add_argument("--memory-batch", type=int, default=8)
    p.add_argument("--grid-memory", type=lambda s: [int(k) for k in s.split(",")],
                   help="grids for --memory (default: the preset's and half of it)")
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    cuda = device.type == "cuda"
    a.classes = a.classes or (1000 if cuda else 10)
    a.batch = a.batch or (32 if cuda else 1)
    a.steps_ours = a.steps_ours or (50 if cuda else 3)
    a.steps_official = a.steps_official or (20 if cuda else 2)
    (memory if a.memory else speed)(a, device)


if __name__ == "__main__":
    main()

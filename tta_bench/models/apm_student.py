"""The APM student network (Asynchronous Perception Machine, Modi & Rawat, NeurIPS 2024).

A single convolution filter squeezes the image into a "trigger column"; every grid location gets a query made of that
column and its own positional encoding, and one shared MLP maps each query to a feature. Locations never exchange
information, so the grid can be computed in chunks, in any order ("asynchronous perception"); a readout pools the grid
into one feature. The module knows nothing of teachers, data or training: `methods/apm.py` wraps it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

READOUTS = ("mean", "attention")


@dataclass(frozen=True)
class APMConfig:
    """Shape of one student; `feature_dim` is the teacher's feature width, filled in at build time."""

    patch: int = 14
    grid: int = 32
    hidden: tuple[int, ...] = (4096, 2048, 1024)
    feature_dim: int = 768
    readout: str = "attention"
    rgb_head: bool = False
    rgb_hidden: tuple[int, ...] = (256, 256)
    init_std: float = 0.01
    heads: int = 8

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.patch < 1 or self.grid < 2 or not self.hidden:
            raise ValueError("need patch >= 1, grid >= 2 and at least one hidden layer")
        if self.readout == "attention" and self.feature_dim % self.heads:
            raise ValueError(f"feature_dim {self.feature_dim} is not divisible by heads {self.heads}")

    @property
    def image_size(self) -> int:
        """Side of the (already resized and normalised) input image."""
        return self.patch * self.grid

    @property
    def locations(self) -> int:
        """Number of grid locations = queries = width of the trigger column."""
        return self.grid * self.grid

    @property
    def query_dim(self) -> int:
        """Trigger column (g²) concatenated with the location's positional encoding (g²)."""
        return 2 * self.locations


PRESETS: dict[str, APMConfig] = {
    # The official test-time-training code: 448 x 448 input, 32 x 32 grid, 22.03M parameters with D = 768.
    "paper": APMConfig(),
    # A small student that trains in seconds on a CPU (128 x 128 input, 8 x 8 grid).
    "cpu": APMConfig(patch=16, grid=8, hidden=(512, 256), readout="mean"),
}


class APMOutput(NamedTuple):
    """What a forward pass returns (a NamedTuple so that torch.func.vmap can carry it)."""

    feature: Tensor  # (B, D) pooled feature
    grid: Tensor | None  # (B, g², D) per-location features in location order, when asked for
    rgb: Tensor | None  # (B, g², 3) predicted mean colour per location, with the RGB head


def sincos_2d(grid: int, width: int) -> Tensor:
    """Fixed 2D sine-cosine encoding, (grid², width): the first half of the channels encode x, the second half y.

    Location l sits at row l // grid, column l % grid, matching a flattened (grid, grid) map.
    """
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    width_x = width // 2
    return torch.cat([_sincos_1d(cols.flatten(), width_x), _sincos_1d(rows.flatten(), width - width_x)], dim=1)


def _sincos_1d(positions: Tensor, width: int) -> Tensor:
    """(N, width) sines then cosines of geometrically spaced frequencies (1 down to 1/10000)."""
    n_freq = (width + 1) // 2
    omega = 1.0 / 10000 ** (torch.arange(n_freq, dtype=torch.float64) / max(n_freq, 1))
    angles = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[:, :width].float()


class AttentionReadout(nn.Module):
    """One learned query attends over the grid (plus a fixed positional encoding), as in the official code."""

    def __init__(self, grid: int, dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.empty(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.register_buffer("posenc", sincos_2d(grid, dim), persistent=False)

    def forward(self, grid: Tensor) -> Tensor:
        keys = grid + self.posenc
        # need_weights=True keeps MultiheadAttention on its explicit matmul path, which vmap batches natively.
        pooled, _ = self.attn(self.query.expand(grid.shape[0], -1, -1), keys, keys, need_weights=True)
        return pooled[:, 0]


def _mlp(widths: Sequence[int], last_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class APMStudent(nn.Module):
    """One APM student. Input: (B, 3, g·p, g·p), already resized and normalised."""

    def __init__(self, cfg: APMConfig, seed: int | None = 0) -> None:
        """`seed` None keeps PyTorch's default initialisation (for templates whose parameters get replaced)."""
        super().__init__()
        self.cfg = cfg
        self.column = nn.Conv2d(3, 1, kernel_size=cfg.patch, stride=cfg.patch)
        self.register_buffer("query_posenc", sincos_2d(cfg.grid, cfg.locations), persistent=False)
        self.mlp = _mlp((cfg.query_dim, *cfg.hidden), last_relu=True)
        self.head = nn.Linear(cfg.hidden[-1], cfg.feature_dim)
        self.readout = AttentionReadout(cfg.grid, cfg.feature_dim, cfg.heads) if cfg.readout == "attention" else None
        self.rgb = _mlp((cfg.feature_dim + cfg.query_dim, *cfg.rgb_hidden, 3), last_relu=False) if cfg.rgb_head else None
        if seed is not None:
            init_student_(self, seed)

    def forward(
        self, x: Tensor, chunk_size: int | None = None, order: Tensor | None = None, *, keep_grid: bool = False
    ) -> APMOutput:
        """Pooled feature; the grid is computed `chunk_size` queries at a time, in `order` (a permutation of g²).

        The result does not depend on chunking or order. With the mean readout and keep_grid False only a running
        sum is kept, so activation memory grows with `chunk_size`, not with the number of locations (without grad).
        """
        n = self.cfg.locations
        order = torch.arange(n, device=x.device) if order is None else order
        if order.shape != (n,):
            raise ValueError(f"order must be a permutation of range({n}), got shape {tuple(order.shape)}")
        need_grid = keep_grid or self.readout is not None
        total: Tensor | int = 0
        grids, rgbs = [], []
        for features, rgb in self._chunks(x, chunk_size or n, order):
            if need_grid:
                grids.append(features)
            else:
                total = total + features.sum(dim=1)
            if rgb is not None:
                rgbs.append(rgb)
        inverse = torch.argsort(order)
        grid = torch.cat(grids, dim=1)[:, inverse] if need_grid else None
        if self.readout is not None:
            feature = self.readout(grid)
        else:
            feature = grid.mean(dim=1) if grid is not None else total / n
        rgb_grid = torch.cat(rgbs, dim=1)[:, inverse] if rgbs else None
        return APMOutput(feature, grid if keep_grid else None, rgb_grid)

    def feature_grid(self, x: Tensor, chunk_size: int | None = None, order: Tensor | None = None) -> Tensor:
        """(B, g², D) per-location features in location order (row-major over the g x g grid)."""
        return self(x, chunk_size, order, keep_grid=True).grid

    def _chunks(self, x: Tensor, chunk_size: int, order: Tensor) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Features (B, K, D) and RGB (B, K, 3) or None for each chunk of K locations; one matmul per layer."""
        cfg = self.cfg
        if x.shape[-3:] != (3, cfg.image_size, cfg.image_size):
            raise ValueError(f"expected input (B, 3, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}")
        trigger = self.column(x).flatten(1)  # (B, g²)
        batch, width = trigger.shape
        for idx in order.split(chunk_size):
            queries = torch.cat(
                [trigger[:, None].expand(batch, len(idx), width), self.query_posenc[idx].expand(batch, -1, -1)], dim=-1
            )
            features = self.head(self.mlp(queries))
            yield features, (self.rgb(torch.cat([features, queries], dim=-1)) if self.rgb is not None else None)


def _initial_value(shape: torch.Size, generator: torch.Generator, std: float) -> Tensor:
    """N(0, std) for every parameter, biases included: the official code re-initialises each parameter of its student
    with normal_(0, 0.01) before every test sample (rajatmodi62/apm, single_token_segmentation/train_tta.py,
    randomize_weights_student). Drawn on the generator's device."""
    return torch.randn(shape, generator=generator, device=generator.device) * std


def _generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def init_student_(student: APMStudent, seed: int, device: torch.device | str | None = None) -> APMStudent:
    """Re-initialise every parameter from a generator seeded with `seed`, so a sample's start does not depend on
    its position in the run. The draw happens on `device` (default: where the student is), as the official code
    draws on the GPU it trains on: the same seed gives the same start on the same kind of device; pass "cpu" for a
    start that is identical on every device (slower on a GPU: ~0.1 s per paper-preset student)."""
    generator = _generator(seed, device or student.column.weight.device)
    for param in student.parameters():
        param.copy_(_initial_value(param.shape, generator, student.cfg.init_std))
    return student


class StackedAPMStudent(nn.Module):
    """S independent students (one per test sample, each from its own seed) run in parallel through torch.func.vmap.

    Output s equals `APMStudent(cfg, seeds[s])(x[s])`; parameters carry a leading S dimension, so one optimizer over
    `parameters()` adapts all S students independently (Adam's updates are element-wise).
    """

    def __init__(self, cfg: APMConfig, seeds: Sequence[int], device: torch.device | str = "cpu",
                 init_device: torch.device | str | None = None) -> None:
        """Built on `device` directly; `init_device` as for init_student_ (default: `device`)."""
        super().__init__()
        self.cfg = cfg
        self.init_device = init_device
        template = APMStudent(cfg, seed=None)
        self._param_shapes = [(name, p.shape) for name, p in template.named_parameters()]
        self._buffer_names = {name.replace(".", "_"): name for name, _ in template.named_buffers()}
        for attr, name in self._buffer_names.items():
            self.register_buffer(attr, template.get_buffer(name).to(device), persistent=False)
        # Kept outside the module tree (a tuple) so that .to() never touches its meta tensors.
        self._template = (template.to("meta"),)
        self.reset_(seeds)

    @property
    def num_students(self) -> int:
        return self.params[0].shape[0]

    @torch.no_grad()
    def reset_(self, seeds: Sequence[int]) -> None:
        """Fresh parameters for a new group of samples (any count); build a new optimizer afterwards."""
        like = self.get_buffer("query_posenc")
        generators = [_generator(seed, self.init_device or like.device) for seed in seeds]
        # student s's k-th parameter is the k-th draw of generator s, as init_student_ draws them
        per_student = [[_initial_value(shape, g, self.cfg.init_std) for _, shape in self._param_shapes]
                       for g in generators]
        self.params = nn.ParameterList(nn.Parameter(torch.stack(draws).to(like)) for draws in zip(*per_student))

    def forward(
        self, x: Tensor, chunk_size: int | None = None, order: Tensor | None = None, *, keep_grid: bool = False
    ) -> APMOutput:
        """x (S, B, 3, H, W) -> APMOutput with a leading S on every field; see APMStudent.forward."""
        if x.shape[0] != self.num_students:
            raise ValueError(f"expected {self.num_students} inputs on dim 0, got {x.shape[0]}")
        params = {name: p for (name, _), p in zip(self._param_shapes, self.params)}
        buffers = {name: self.get_buffer(attr) for attr, name in self._buffer_names.items()}

        def one(p: dict[str, Tensor], xs: Tensor) -> APMOutput:
            return functional_call(self._template[0], (p, buffers), (xs, chunk_size, order), {"keep_grid": keep_grid})

        out_dims = APMOutput(0, 0 if keep_grid else None, 0 if self.cfg.rgb_head else None)
        return vmap(one, out_dims=out_dims)(params, x)

    def feature_grid(self, x: Tensor, chunk_size: int | None = None, order: Tensor | None = None) -> Tensor:
        """(S, B, g², D) per-location features in location order."""
        return self(x, chunk_size, order, keep_grid=True).grid


def preset(name: str, feature_dim: int) -> APMConfig:
    """A named preset with the teacher's feature width filled in."""
    return dataclasses.replace(PRESETS[name], feature_dim=feature_dim)


def analytic_macs_per_query(cfg: APMConfig) -> int:
    """Multiply-adds of one query through the MLP and feature head (and the RGB head when it is enabled)."""
    macs = sum(a * b for a, b in pairwise((cfg.query_dim, *cfg.hidden, cfg.feature_dim)))
    if cfg.rgb_head:
        macs += sum(a * b for a, b in pairwise((cfg.feature_dim + cfg.query_dim, *cfg.rgb_hidden, 3)))
    return macs


def analytic_macs_per_image(cfg: APMConfig) -> int:
    """Forward multiply-adds for one image: column filter + all g² queries + readout (matrix products only)."""
    n, d = cfg.locations, cfg.feature_dim
    column = n * 3 * cfg.patch**2
    # attention: key/value projections of the grid, query and output projections, scores and weighted sum
    readout = 2 * n * d * d + 2 * d * d + 2 * n * d if cfg.readout == "attention" else 0
    return column + n * analytic_macs_per_query(cfg) + readout


def analytic_flops_per_step(cfg: APMConfig, batch: int = 1) -> int:
    """FLOPs of one training step on `batch` images.

    Convention: 2 FLOPs per multiply-add (as torch.utils.flop_counter counts), and a step = forward + backward
    = 3 x forward (the backward computes input and weight gradients of each matrix product). Element-wise work is
    not counted.
    """
    return 3 * 2 * batch * analytic_macs_per_image(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "APMConfig",
    "APMOutput",
    "APMStudent",
    "AttentionReadout",
    "PRESETS",
    "StackedAPMStudent",
    "analytic_flops_per_step",
    "analytic_macs_per_image",
    "analytic_macs_per_query",
    "count_parameters",
    "init_student_",
    "preset",
    "sincos_2d",
]

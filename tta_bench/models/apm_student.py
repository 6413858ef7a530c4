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
from torch.nn import functional as F

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
    """What a forward pass returns."""

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
        pooled, _ = self.attn(self.query.expand(grid.shape[0], -1, -1), keys, keys, need_weights=False)
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


# The stacked students' bias: added in a pass of its own after each batched product (False), or read by the product
# itself (True: torch.baddbmm, whose GEMM takes the bias as its accumulator's start). The same students either way;
# benchmarks/apm_gpu.py floor measures which step is faster on a GPU.
BIAS_IN_PRODUCT = False


class StackedAPMStudent(nn.Module):
    """S independent students (one per test sample, each from its own seed) computed together as batched matrix
    products: every layer holds a leading S dimension.

    Output s equals `APMStudent(cfg, seeds[s])(x[s])`, parameter for parameter (`student_parameters(s)` returns them
    in APMStudent's layout). One optimizer over `parameters()` adapts all S students independently (Adam is
    element-wise). A linear layer's weights are stored as (S, in, out), so the weight gradient that the batched
    product yields, xᵀ·grad, already has the parameter's layout: torch.func.vmap over nn.Linear, the first version,
    produced (S, in, out) gradients and transposed them into (S, out, in) at every step, 38% of a step's GPU time
    on an H200 (benchmarks/RESULTS.md).
    """

    def __init__(self, cfg: APMConfig, seeds: Sequence[int], device: torch.device | str = "cpu",
                 init_device: torch.device | str | None = None, bias_in_product: bool = BIAS_IN_PRODUCT) -> None:
        """Built on `device` directly; `init_device` as for init_student_ (default: `device`); `bias_in_product`
        as BIAS_IN_PRODUCT says."""
        super().__init__()
        self.cfg = cfg
        self.init_device = init_device
        self.bias_in_product = bias_in_product
        template = APMStudent(cfg, seed=None)
        self._shapes = [(name, p.shape) for name, p in template.named_parameters()]
        self.register_buffer("query_posenc", template.query_posenc.to(device), persistent=False)
        readout_posenc = template.readout.posenc if template.readout is not None else torch.zeros(0)
        self.register_buffer("readout_posenc", readout_posenc.to(device), persistent=False)
        self.params = nn.ParameterDict()
        self.reset_(seeds)

    @property
    def num_students(self) -> int:
        return self.params["column_weight"].shape[0]

    @staticmethod
    def _stored(name: str) -> str:
        return name.replace(".", "_")

    @staticmethod
    def _transposed(name: str, shape: torch.Size) -> bool:
        """Linear weights (out, in) are stored as (in, out); the column filter and vectors keep their shape."""
        return len(shape) == 2 and name.endswith("weight")

    @torch.no_grad()
    def reset_(self, seeds: Sequence[int]) -> None:
        """Fresh parameters for a new group of samples (any count); build a new optimizer afterwards."""
        like = self.query_posenc
        generators = [_generator(seed, self.init_device or like.device) for seed in seeds]
        # student s's k-th parameter is the k-th draw of generator s, as init_student_ draws them
        per_student = [[_initial_value(shape, g, self.cfg.init_std) for _, shape in self._shapes] for g in generators]
        self.params = nn.ParameterDict()
        for (name, shape), draws in zip(self._shapes, zip(*per_student)):
            value = torch.stack(draws).to(like)
            self.params[self._stored(name)] = nn.Parameter(value.transpose(1, 2).contiguous()
                                                           if self._transposed(name, shape) else value)

    def student_parameters(self, s: int) -> dict[str, Tensor]:
        """Student s's parameters under APMStudent's names and layout."""
        out = {}
        for name, shape in self._shapes:
            value = self.params[self._stored(name)][s]
            out[name] = value.t() if self._transposed(name, shape) else value
        return out

    def _affine(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """x (S, M, in) @ weight (S, in, out) + bias (S, out), in the product's dtype (as nn.Linear under autocast: a
        float32 bias would promote the activations back to float32)."""
        if self.bias_in_product:  # autocast casts all three operands of baddbmm alike
            return torch.baddbmm(bias[:, None], x, weight)
        product = torch.bmm(x, weight)
        return product + bias.to(product.dtype)[:, None]

    def _linear(self, name: str, x: Tensor) -> Tensor:
        """x (S, M, in) -> (S, M, out) through layer `name` of every student."""
        return self._affine(x, self.params[f"{name}_weight"], self.params[f"{name}_bias"])

    def _mlp(self, prefix: str, x: Tensor, layers: int, last_relu: bool) -> Tensor:
        for i in range(layers):
            x = self._linear(f"{prefix}_{2 * i}", x)
            if last_relu or i < layers - 1:
                x = torch.relu(x)
        return x

    def forward(
        self, x: Tensor, chunk_size: int | None = None, order: Tensor | None = None, *, keep_grid: bool = False
    ) -> APMOutput:
        """x (S, B, 3, H, W) -> APMOutput with a leading S on every field; see APMStudent.forward."""
        cfg, n = self.cfg, self.cfg.locations
        if x.shape[0] != self.num_students:
            raise ValueError(f"expected {self.num_students} inputs on dim 0, got {x.shape[0]}")
        if x.shape[-3:] != (3, cfg.image_size, cfg.image_size):
            raise ValueError(f"expected input (S, B, 3, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}")
        order = torch.arange(n, device=x.device) if order is None else order
        if order.shape != (n,):
            raise ValueError(f"order must be a permutation of range({n}), got shape {tuple(order.shape)}")
        students, batch = x.shape[:2]
        # the column filter of every student at once: a grouped convolution, one group per student
        column = F.conv2d(x.transpose(0, 1).reshape(batch, students * 3, cfg.image_size, cfg.image_size),
                          self.params["column_weight"].reshape(students, 3, cfg.patch, cfg.patch),
                          self.params["column_bias"].reshape(students), stride=cfg.patch, groups=students)
        trigger = column.reshape(batch, students, n).transpose(0, 1)  # (S, B, g²)
        attention = cfg.readout == "attention"
        need_grid = keep_grid or attention
        total: Tensor | int = 0
        grids, rgbs = [], []
        for idx in order.split(chunk_size or n):
            k = len(idx)
            queries = torch.cat([trigger[:, :, None].expand(students, batch, k, n),
                                 self.query_posenc[idx].expand(students, batch, k, n)], dim=-1)
            flat = queries.reshape(students, batch * k, cfg.query_dim)
            features = self._linear("head", self._mlp("mlp", flat, len(cfg.hidden), last_relu=True))
            if cfg.rgb_head:
                rgb = self._mlp("rgb", torch.cat([features, flat.to(features.dtype)], dim=-1),
                                len(cfg.rgb_hidden) + 1, last_relu=False)
                rgbs.append(rgb.reshape(students, batch, k, 3))
            features = features.reshape(students, batch, k, cfg.feature_dim)
            if need_grid:
                grids.append(features)
            else:
                total = total + features.sum(dim=2)
        inverse = torch.argsort(order)
        grid = torch.cat(grids, dim=2)[:, :, inverse] if need_grid else None
        if attention:
            feature = self._attention_readout(grid)
        else:
            feature = grid.mean(dim=2) if grid is not None else total / n
        rgb_grid = torch.cat(rgbs, dim=2)[:, :, inverse] if rgbs else None
        return APMOutput(feature, grid if keep_grid else None, rgb_grid)

    def _attention_readout(self, grid: Tensor) -> Tensor:
        """AttentionReadout for every student: one learned query over the grid (+ positional encoding), as
        nn.MultiheadAttention computes it (in-projection, scaled dot-product per head, out-projection)."""
        students, batch, n, d = grid.shape
        heads = self.cfg.heads
        w_in, b_in = self.params["readout_attn_in_proj_weight"], self.params["readout_attn_in_proj_bias"]  # (S, D, 3D)
        keys = (grid + self.readout_posenc.to(grid.dtype)).reshape(students, batch * n, d)
        q = self._affine(self.params["readout_query"].reshape(students, 1, d), w_in[:, :, :d], b_in[:, :d])
        kv = self._affine(keys, w_in[:, :, d:], b_in[:, d:])
        k, v = kv.reshape(students * batch, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        q = q.to(k.dtype).reshape(students, 1, 1, heads, d // heads).expand(students, batch, 1, heads, d // heads)
        q = q.reshape(students * batch, 1, heads, d // heads).transpose(1, 2)
        pooled = F.scaled_dot_product_attention(q, k, v).reshape(students, batch, d)  # one query: heads concatenate
        return self._affine(pooled, self.params["readout_attn_out_proj_weight"], self.params["readout_attn_out_proj_bias"])

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


__all__ = ["APMConfig", "APMOutput", "APMStudent", "AttentionReadout", "PRESETS", "StackedAPMStudent",
           "analytic_flops_per_step", "analytic_macs_per_image", "analytic_macs_per_query", "count_parameters",
           "init_student_", "preset", "sincos_2d"]

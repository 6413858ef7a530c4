"""The closed sets of choices a run is configured with, each defined once (a ``Literal`` type and its values).

Configuration fields are annotated with these types; the command line takes its ``choices`` from them and
``RunConfig.validate`` checks them in one place. Imports nothing of tta_bench (ground floor).
"""
from __future__ import annotations

from typing import Literal, get_args

Setting = Literal["reset_each_shift", "continual", "gradual", "mixed_domains", "correlated", "reset_each_shift_correlated",
                  "gradual_correlated", "mixed_domains_correlated", "gradual_once"]  # test streams (stream.SETTINGS)
Source = Literal["published", "hub", "generated"]  # the standard on-disk layout, a Hugging Face copy, generated
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]  # auto: the method's reference precision on CUDA, float32 on the CPU
ResetMode = Literal["episodic", "online"]  # an online method's state: restored before every batch, or kept
OnError = Literal["stop", "skip"]  # what a corrupt image does to a run
Sorter = Literal["note", "rotta"]  # class-correlated order: the unified benchmark's Dirichlet sorter, or RoTTA's
ArrayOrder = Literal["keep", "shuffle"]  # an array layout's order within a domain: as published, or shuffled by seed
LabelIndex = Literal["imagenet1k", "suite"]  # what a Hub copy's integer labels index
TableFormat = Literal["md", "csv", "latex"]
PromptSet = Literal["single", "apm", "ensemble", "coop", "tip"]  # named CLIP prompt sets; any other --prompts is a file
LogKind = Literal["csv", "tensorboard", "wandb"]  # experiment logging while a run goes (runlog.py)

SETTINGS: tuple[str, ...] = get_args(Setting)
SOURCES: tuple[str, ...] = get_args(Source)
DEVICES: tuple[str, ...] = get_args(Device)
PRECISIONS: tuple[str, ...] = get_args(Precision)
RESET_MODES: tuple[str, ...] = get_args(ResetMode)
ON_ERROR: tuple[str, ...] = get_args(OnError)
SORTERS: tuple[str, ...] = get_args(Sorter)
ARRAY_ORDERS: tuple[str, ...] = get_args(ArrayOrder)
LABEL_INDICES: tuple[str, ...] = get_args(LabelIndex)
TABLE_FORMATS: tuple[str, ...] = get_args(TableFormat)
PROMPT_SETS: tuple[str, ...] = get_args(PromptSet)
LOGS: tuple[str, ...] = get_args(LogKind)

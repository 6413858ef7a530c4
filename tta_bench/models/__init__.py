"""Networks that know nothing of teachers, data or the engine."""

from tta_bench.models.apm_student import (
    PRESETS,
    APMConfig,
    APMOutput,
    APMStudent,
    StackedAPMStudent,
    analytic_flops_per_step,
    analytic_macs_per_image,
    analytic_macs_per_query,
    count_parameters,
    init_student_,
    preset,
)

__all__ = [
    "PRESETS",
    "APMConfig",
    "APMOutput",
    "APMStudent",
    "StackedAPMStudent",
    "analytic_flops_per_step",
    "analytic_macs_per_image",
    "analytic_macs_per_query",
    "count_parameters",
    "init_student_",
    "preset",
]

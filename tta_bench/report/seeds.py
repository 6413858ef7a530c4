"""The aggregate of one configuration run under several seeds: mean ± sample std per split, n stated."""
from __future__ import annotations

from ..metrics import mean_std


def aggregate(summaries: list[dict]) -> dict:
    """Summaries of the same configuration that differ only by seed -> one aggregate record."""
    seeds = [s["seed"] for s in summaries]
    splits = {}
    for name in summaries[0]["splits"]:
        values = [s["splits"][name]["top1"] for s in summaries if name in s["splits"]]
        mean, std = mean_std(values)
        splits[name] = {"top1_mean": mean, "top1_std": std, "n_seeds": len(values)}
    mean, std = mean_std([s["mean_top1"] for s in summaries])
    first = summaries[0]
    return {"suite": first["suite"], "method": first["method"], "teacher": first["teacher"], "seeds": seeds,
            "std": "sample standard deviation (n - 1)", "splits": splits, "mean_top1_mean": mean, "mean_top1_std": std,
            "runs": [s["run_name"] for s in summaries]}

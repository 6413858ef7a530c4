"""The words a run folder is written in, in one torch-free place: file names, the corruption list, split names (build
and parse), which configuration fields are a run's identity, and the default stream setting.

The engine writes with them, the report reads with them, data and test fixtures build names with them: a rename
happens here once. Imports nothing of tta_bench, so a table can be rebuilt without torch.
"""
from __future__ import annotations

import re

# -- the run folder ---------------------------------------------------------------------------------------------
CONFIG = "config.json"  # the RunConfig, written at start
PREDICTIONS = "predictions.jsonl"  # one record per sample (per visit, for settings that revisit a sample)
SUMMARY = "summary.json"  # written atomically at the end
METRICS = "metrics.json"  # written by `metrics` from saved logits
INPUTS = "inputs.json"  # fingerprints of what determines predictions (weights, prompts, the stream's samples)
LOCK = ".lock"  # held by the process that runs in the folder
COST = "cost"  # per-rank running totals of compute (seconds, samples), kept across resumes
SHARDS = "shards"  # per-rank predictions of an unfinished torchrun
LOGITS = "logits"  # float16 logits per split (--save-logits)
LOG = "log.csv"  # per-batch accuracy, loss and cost while the run goes (--log csv; runlog.py)
RUN_FILES = (SUMMARY, CONFIG, PREDICTIONS)  # any of these marks a folder as a run folder

# -- corruptions (ImageNet-C order, Hendrycks & Dietterich 2019: noise, blur, weather, digital) ----------------------
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# column headers of corruption tables, as TTA papers print them
SHORT_NAMES = dict(zip(CORRUPTIONS, ("gauss", "shot", "impul", "defoc", "glass", "motn", "zoom", "snow", "frost",
                                     "fog", "brit", "contr", "elast", "pixel", "jpeg")))

# -- the ten cross-dataset suites of the CLIP test-time papers, in TPT Table 2's column order ------------------------
FINE_GRAINED: tuple[str, ...] = ("flowers102", "dtd", "pets", "cars", "ucf101", "caltech101", "food101", "sun397",
                                 "aircraft", "eurosat")

# -- split names: a clean set is named after its suite; a corruption split "<corruption>-<severity>" -----------------
_CORRUPTION_SPLIT = re.compile(r"^([a-z_]+)-([1-9]\d*)$")


def split_name(corruption: str, severity: int) -> str:
    return f"{corruption}-{severity}"


def parse_split(name: str) -> tuple[str, int] | None:
    """'gaussian_noise-5' -> ('gaussian_noise', 5); None for a clean split or an aggregate ('mean-5')."""
    match = _CORRUPTION_SPLIT.match(name)
    if match is None or match.group(1) == "mean":
        return None
    return match.group(1), int(match.group(2))


# -- the prediction record (one line of predictions.jsonl) -------------------------------------------------------
def sample_key(split: str, sample_id: str, visit: int = 0) -> tuple[str, str, int]:
    """A prediction's key in a run: split, sample id and visit (settings that replay a domain, gradual, predict a
    sample once per visit; 0 otherwise)."""
    return split, sample_id, visit


def record_key(record: dict) -> tuple[str, str, int]:
    """The key of a written record (``visit`` is absent where it is 0)."""
    return sample_key(record["split"], record["id"], record.get("visit", 0))


def prediction_record(split: str, sample_id: str, label: int, visit: int, top5: list[int], extra: dict,
                      diverged: bool) -> dict:
    """A prediction: ``top5`` label-space classes, best first; the method's extras (in label-space terms, its own
    business) merged as they are. A diverged sample (non-finite logits) or one its method marks failed is wrong."""
    record = {"split": split, "id": sample_id, "label": label, "pred": top5[0], "top5": top5,
              "correct": top5[0] == label, "status": "ok", **_visit(visit), **extra}
    if diverged:
        record["status"] = "failed"
    if record["status"] != "ok":
        record["correct"] = False
    return record


def error_record(split: str, sample_id: str, label: int, visit: int, message: str) -> dict:
    """An unreadable sample (``--on-error skip``): no prediction, counted apart."""
    return {"split": split, "id": sample_id, "label": label, "pred": -1, "top5": [], "correct": False,
            "status": "error", "error": message, **_visit(visit)}


def _visit(visit: int) -> dict[str, int]:
    """Only replayed samples carry a visit number, so other settings' records keep their fields."""
    return {"visit": visit} if visit else {}


# -- identity: the RunConfig fields that do not change what a run predicts ----------------------------------------
# Where it is written, how many workers decode, whether a corrupt file stops the run (the rerun the stop message
# advises), the output-only options (saved logits, recorded steps: adding one to a finished run computes just what
# is missing, in the same folder; outputs.py) and the experiment log streamed while it runs (runlog.py). A resume
# with other values of these continues the same run; any other field starts another one.
NOT_IDENTITY = frozenset({"out", "num_workers", "overwrite", "device", "on_error", "save_logits", "record_steps",
                          "log"})

# -- stream settings --------------------------------------------------------------------------------------------
DEFAULT_SETTING = "reset_each_shift"

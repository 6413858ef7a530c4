"""Start-up time of the quick commands: `run_bench.py --help` and `run_bench.py list`, wall clock of a fresh
process each (median and min of N), for this checkout and optionally another (e.g. the commit before the lazy
imports, exported with `git archive`), with `python -c pass` and `python -c "import torch"` for scale.

    python benchmarks/startup.py [--repeat 10] [--baseline /tmp/base-checkout]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--baseline", type=Path, help="another checkout to time the same commands in")
    a = p.parse_args()
    rows = [("python -c pass", *wall([sys.executable, "-c", "pass"], ROOT, a.repeat)),
            ("python -c 'import torch'", *wall([sys.executable, "-c", "import torch"], ROOT, a.repeat))]
    for label, root in [("this checkout", ROOT)] + ([("baseline", a.baseline)] if a.baseline else []):
        for args in (["--help"], ["list"]):
            rows.append((f"{label}: run_bench.py {' '.join(args)}",
                         *wall([sys.executable, "run_bench.py", *args], root, a.repeat)))
    print(f"| command | median s | min s |  ({a.repeat} runs each)\n|---|---:|---:|")
    for label, median, best in rows:
        print(f"| {label} | {median:.2f} | {best:.2f} |")


if __name__ == "__main__":
    main()

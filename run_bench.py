#!/usr/bin/env python
"""tta_bench entry point: ``python run_bench.py --help``."""
import sys

from tta_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())

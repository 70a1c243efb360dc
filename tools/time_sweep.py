"""Wall and process-CPU time per batch of the retention sweep's loop (model load and first batch left out).

    OMP_NUM_THREADS=1 PYTHONPATH=src python tools/time_sweep.py conf/eval.yaml eval.limit=64 [key=value ...]

Runs score_lit.evaluation.sweep.sweep (no files, no MLflow) and times the gaps between its batch records, so
the same command times any tree whose sweep takes `on_batch` (PYTHONPATH picks the tree). One thread makes
the CPU time a fair comparison on a shared machine; alternate the trees and repeat.
"""

import statistics
import sys
import time
from itertools import pairwise

import score_lit
from score_lit.config import load_config
from score_lit.evaluation.sweep import sweep


def main(argv: list[str]) -> int:
    files = [a for a in argv if a.endswith((".yaml", ".yml"))]
    cfg = load_config(files or ["conf/eval.yaml"], [a for a in argv if a not in files])
    wall, cpu = [], []
    sweep(cfg, progress=False, on_batch=lambda rec: (wall.append(time.perf_counter()), cpu.append(time.process_time())))
    gw = [b - a for a, b in pairwise(wall)]
    gc = [b - a for a, b in pairwise(cpu)]
    if not gw:
        print("fewer than 2 batches: nothing to time (raise eval.limit)")
        return 1
    print(
        f"{score_lit.__file__}: {len(wall)} batches; batches 2..{len(wall)}: wall per batch mean {statistics.mean(gw):.2f} s "
        f"median {statistics.median(gw):.2f} s min {min(gw):.2f} s; process CPU per batch mean {statistics.mean(gc):.2f} s "
        f"min {min(gc):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

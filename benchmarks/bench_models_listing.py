"""``mobileface models`` listing time: stored figures (now) against measuring every model (before).

Both ways run in this one process, on the same names, side by side:

* new: the ``models`` verb's handler as the CLI runs it (stored figures from
  ``mobileface/assets/model_zoo.json`` plus the bundled weights' cards), its file cache
  cleared before every run; median of ``--repeats`` runs. It runs first, before PyTorch is
  imported, and the script reports whether it imported PyTorch (it must not);
* old: ``mobileface.models.model_cards`` as the verb called it before: import PyTorch and the
  zoo, then build and measure every model (parameters, BN folding, multiply-adds); run once.

Then, for the user's view, the wall time of a fresh ``python -m mobileface models`` process.

    .venv/bin/python benchmarks/bench_models_listing.py
    .venv/bin/python benchmarks/bench_models_listing.py --pattern 'mobilefacenet*' --json out.json

On a shared machine wall-clock figures scale with its load, printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def _new_listing(pattern: str) -> float:
    """Seconds of one ``mobileface models PATTERN`` run in this process, file cache cleared."""
    from mobileface.cli import main
    from mobileface.zoo import _stored

    _stored.cache_clear()
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        status = main(["models", pattern])
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"mobileface models {pattern} failed with status {status}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pattern", default="*", help="names to list (default: the whole zoo)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of the new listing")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from mobileface.zoo import zoo_names

    names = zoo_names(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_average_before": os.getloadavg()[0],
        "pattern": args.pattern,
        "models": len(names),
    }

    first = _new_listing(args.pattern)  # the first run also imports the CLI's modules
    runs = [_new_listing(args.pattern) for _ in range(max(1, args.repeats))]
    results["new_first_s"] = first
    results["new_median_s"] = statistics.median(runs)
    results["new_imported_torch"] = "torch" in sys.modules

    start = time.perf_counter()
    from mobileface.models import model_card  # imports PyTorch and registers the zoo

    results["old_import_s"] = time.perf_counter() - start
    per_model = {}
    for name in names:
        t0 = time.perf_counter()
        model_card(name)
        per_model[name] = time.perf_counter() - t0
    results["old_measure_s"] = sum(per_model.values())
    results["old_total_s"] = results["old_import_s"] + results["old_measure_s"]
    results["old_per_model_s"] = per_model

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mobileface", "models", args.pattern],
        capture_output=True,
        text=True,
        check=False,
    )
    results["new_process_s"] = time.perf_counter() - start
    results["new_process_status"] = done.returncode
    results["load_average_after"] = os.getloadavg()[0]

    n = len(names)
    old, new = results["old_total_s"], results["new_median_s"]
    print(f"{results['machine']}; load average {results['load_average_before']:.2f}")
    print(f"mobileface models {args.pattern!r}: {n} model{'s' * (n != 1)}, same process\n")
    print(f"{'':40s}{'new (stored)':>16s}{'old (measured)':>18s}")
    print(f"{'listing, first run':40s}{first * 1e3:13.1f} ms{old:16.1f} s")
    print(f"{f'listing, median of {len(runs)} runs':40s}{new * 1e3:13.1f} ms{'':>18s}")
    print(f"{'  of which import torch + zoo':40s}{'-':>16s}{results['old_import_s']:16.1f} s")
    print(
        f"{'  of which building/measuring models':40s}{'-':>16s}{results['old_measure_s']:16.1f} s"
    )
    slowest = max(per_model, key=per_model.get)
    print(f"{f'  slowest model ({slowest})':40s}{'-':>16s}{per_model[slowest]:16.1f} s")
    print(
        f"\nspeed-up (median): {old / new:,.0f}x; new listing imported PyTorch: "
        f"{results['new_imported_torch']}"
    )
    print(
        f"fresh process 'python -m mobileface models {args.pattern}': "
        f"{results['new_process_s']:.2f} s (status {done.returncode})"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What crash isolation costs: the child-process probe (engine.inference.probe) against a plain in-process
load of the same file, and a load answered by a kept verdict; models alternated, several rounds, medians
and spread. The probe runs once per file and set of load settings.

    python benchmarks/probe_cost.py MODEL.gguf [MODEL.gguf ...] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["TANDEM_DATA_DIR"] = tempfile.mkdtemp(prefix="tandem-probe-bench-")  # never the user's verdicts

from engine.config import LoadConfig  # noqa: E402
from engine.inference import probe  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402
from engine.store.probe_verdicts import VerdictStore  # noqa: E402


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs: dict[Path, dict[str, list[float]]] = {
        m: {k: [] for k in ("probe", "load", "cached")} for m in args.models
    }
    for _ in range(args.rounds):
        for model in args.models:  # alternated: a disturbance hits every model alike
            config = LoadConfig(model_path=model)
            started = time.perf_counter()
            verdict = probe.run_probe(config)
            runs[model]["probe"].append(time.perf_counter() - started)
            assert verdict is not None and verdict.outcome == "ok", verdict
            started = time.perf_counter()
            ChatEngine.load(config, isolate=False).close()
            runs[model]["load"].append(time.perf_counter() - started)
            VerdictStore().put(probe.verdict_key(config), verdict)
            started = time.perf_counter()
            assert not probe.check_opens(config).ran
            runs[model]["cached"].append(time.perf_counter() - started)
    for model, r in runs.items():
        cached_ms = statistics.median(r["cached"]) * 1000
        print(
            f"{model.name}: probe {spread(r['probe'])}; in-process load {spread(r['load'])}; "
            f"kept verdict {cached_ms:.1f} ms; {args.rounds} rounds"
        )


if __name__ == "__main__":
    main()

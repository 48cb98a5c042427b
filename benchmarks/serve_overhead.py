"""Server overhead: one prompt decoded in-process (ChatEngine.chat) and through `tandem serve` (HTTP + SSE,
read by Tandem's remote client), alternating in one run, with speculation on and off.

Decode speed is first token to last, as each side's client sees it; for the server it is also given as the
server measured it itself (its `timings.decode_per_second`), so the cost of the HTTP hop shows apart from
the cost of running the same engine in another process. Both engines load the same model with the same
threads; only one generates at a time.

    python benchmarks/serve_overhead.py [--model M.gguf] [--drafter auto] [--threads 2] [--tokens 200]
        [--repeat 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
from pathlib import Path

from _common import default_model, median

from engine.config import GenerationParams, LoadConfig, SamplingParams, SpecParams
from engine.events import DoneEvent
from engine.inference.session import ChatEngine
from engine.measure.bench import load_prompts
from engine.remote.client import RemoteClient, RemoteEndpoint

REPO = Path(__file__).resolve().parents[1]


def start_server(model: Path, drafter: str, threads: int, ctx: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--model", str(model), "--drafter", drafter]
        + ["--threads", str(threads), "--ctx", str(ctx), "--port", "0", "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"serving on (http://\S+)/v1", line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, match.group(1)
    raise SystemExit("tandem serve did not start")


def done_of(events: object) -> DoneEvent:
    done = [e for e in events if isinstance(e, DoneEvent)]  # type: ignore[attr-defined]
    return done[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--drafter", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="runs per side and mode; medians are compared")
    ap.add_argument("--prompt", default="free-story", help="a prompt id of resources/bench_prompts.jsonl")
    args = ap.parse_args()
    model = args.model or default_model()
    prompt = next(p for p in load_prompts(None) if p.id == args.prompt)
    messages = list(prompt.messages)

    engine = ChatEngine.load(
        LoadConfig(model_path=model, drafter=args.drafter, n_ctx=args.ctx, n_threads=args.threads)  # type: ignore[arg-type]
    )
    proc, url = start_server(model, args.drafter, args.threads, args.ctx)
    client = RemoteClient(RemoteEndpoint(url))
    results: dict[tuple[str, bool], list[float]] = {}
    server_own: dict[bool, list[float]] = {True: [], False: []}
    try:
        print(
            f"{model.name} · drafter {engine.info.drafter or 'none'} · {args.threads} threads · prompt "
            f"{prompt.id} · {args.tokens} tokens · {args.repeat} runs per side, alternating"
        )
        # One unmeasured run per side and mode: both sides then reuse the prompt from their KV cache alike.
        for rep in range(-1, args.repeat):
            for spec in (True, False):
                params = GenerationParams(
                    sampling=SamplingParams(temperature=0.0, seed=1),
                    max_tokens=args.tokens,
                    spec=SpecParams(enabled=spec),
                )
                sides = ("in-process", "server") if rep % 2 == 0 else ("server", "in-process")
                for side in sides:
                    if side == "in-process":
                        done = done_of(engine.chat(messages, params))
                    else:
                        done = done_of(client.chat(messages, params))
                    if rep < 0:
                        continue
                    if side == "server":
                        own = done.stats.server.server_tps if done.stats.server else None
                        server_own[spec].append(own or 0.0)
                    results.setdefault((side, spec), []).append(done.stats.decode_tps)
                    print(
                        f"  run {rep + 1} {'spec ' if spec else 'plain'} {side:<10} "
                        f"{done.stats.decode_tps:7.1f} tok/s ({done.stats.n_generated} tokens)"
                    )
    finally:
        client.close()
        proc.terminate()
        proc.wait(15)
        engine.close()

    print("\nmedian decode tok/s [min–max]")
    for spec in (True, False):
        local, remote = results[("in-process", spec)], results[("server", spec)]
        mode = "speculative" if spec else "plain"
        print(
            f"  {mode:<11} in-process {median(local):6.1f} [{min(local):.1f}–{max(local):.1f}]   "
            f"through the server {median(remote):6.1f} [{min(remote):.1f}–{max(remote):.1f}] "
            f"(the server itself: {median(server_own[spec]):.1f})   "
            f"server/in-process {median(remote) / median(local):.3f}"
        )


if __name__ == "__main__":
    main()

"""`tandem chat`: stream a reply in the terminal; interactive when no prompt is given."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from engine.cli.common import add_model_args, add_spec_args, load_config, spec_params
from engine.config import CancelToken, ChatMessage, GenerationParams, SamplingParams
from engine.events import DoneEvent, Event, NoticeEvent, TokenEvent
from engine.inference.api import EngineInfo
from engine.text import printable, shown


class _Chat(Protocol):
    """What the terminal chat needs: the loaded pair (ChatEngine) or a server (RemoteChatEngine)."""

    @property
    def info(self) -> EngineInfo: ...

    def chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]: ...

    def close(self) -> None: ...


def register(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat in the terminal", description="Chat with a model in the terminal.")
    p.add_argument("prompt", nargs="?", help="one message to answer; without it, chat interactively")
    add_model_args(p)
    remote = p.add_argument_group("remote engine")
    remote.add_argument(
        "--server",
        metavar="URL",
        help="chat on an OpenAI-compatible server instead (llama-server, vLLM, another Tandem ...); "
        "--model then names the server's model (default: the first it lists)",
    )
    remote.add_argument("--api-key", help="the server's API key (default: $TANDEM_API_KEY)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temp", type=float, default=0.0, help="temperature; 0 = greedy (default 0)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, help="random seed (same seed, same reply)")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--no-spec", action="store_true", help="plain decoding: no speculation")
    add_spec_args(p)
    p.add_argument(
        "--stats", action="store_true", help="print speed and speculation statistics after each reply"
    )
    p.set_defaults(func=run)


def params_from(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        sampling=SamplingParams(
            temperature=args.temp,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            repeat_penalty=args.repeat_penalty,
            seed=args.seed,
        ),
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        spec=spec_params(args, enabled=not args.no_spec),
    )


def format_stats(done: DoneEvent) -> str:
    s = done.stats
    line = (
        f"[{s.n_generated} tokens, {s.decode_tps:.1f} tok/s, first token {s.ttft_s * 1000:.0f} ms, "
        f"prompt {s.n_prompt} ({s.n_prompt_cached} cached), stop: {done.stop_reason.value}"
    )
    if s.spec is not None:
        sp = s.spec
        line += (
            f"; {sp.drafter}: drafted {sp.drafted}, accepted {sp.accepted} ({sp.acceptance_rate:.0%}), "
            f"mean accepted length {sp.mean_accepted_length:.2f}"
        )
        if sp.main_reason:
            line += f"; off because: {sp.main_reason}"
    if s.server is not None:
        from engine.remote.figures import describe

        line += "; " + describe(s.server)
    return line + "]"


def _reply(engine: _Chat, messages: list[ChatMessage], params: GenerationParams, show_stats: bool) -> str:
    cancel = CancelToken()
    text = ""
    try:
        for ev in engine.chat(messages, params, cancel):
            if isinstance(ev, TokenEvent):
                sys.stdout.write(printable(ev.text))  # model output: no terminal escapes
                sys.stdout.flush()
            elif isinstance(ev, NoticeEvent):
                print(f"\n[note: {shown(ev.message, 500)}]", file=sys.stderr)
            elif isinstance(ev, DoneEvent):
                text = ev.text
                print()
                if show_stats:
                    print(format_stats(ev), file=sys.stderr)
    except KeyboardInterrupt:
        # Ctrl+C stops this reply only; the engine stays usable for the next message.
        cancel.cancel()
        print("\n[stopped]", file=sys.stderr)
    return text


def _open(args: argparse.Namespace) -> _Chat:
    if args.server:
        from engine.remote.client import RemoteEndpoint
        from engine.remote.engine import RemoteChatEngine

        key = args.api_key or os.environ.get("TANDEM_API_KEY") or None
        model = str(args.model) if args.model is not None else None
        return RemoteChatEngine(RemoteEndpoint(args.server, key, model))
    from engine.inference.session import ChatEngine

    return ChatEngine.load(load_config(args))


def run(args: argparse.Namespace) -> int:
    params = params_from(args)
    engine = _open(args)
    try:
        info = engine.info
        where = f" · {info.device}" if info.endpoint else ""
        print(
            f"[{shown(info.model_name, 80)}{where} · {info.n_ctx} ctx · drafter: "
            f"{shown(info.drafter or 'none', 80)}"
            + (f" ({shown(info.drafter_note, 300)})" if info.drafter_note else "")
            + "]",
            file=sys.stderr,
        )
        system = [ChatMessage("system", args.system)] if args.system else []
        if args.prompt is not None:
            _reply(engine, [*system, ChatMessage("user", args.prompt)], params, args.stats)
            return 0
        history: list[ChatMessage] = list(system)
        print("Type a message; /reset starts over, /quit or Ctrl+D leaves.", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                print()
                return 0
            if line.strip() in ("/quit", "/exit"):
                return 0
            if line.strip() == "/reset":
                history = list(system)
                continue
            if not line.strip():
                continue
            history.append(ChatMessage("user", line))
            reply = _reply(engine, history, params, args.stats)
            history.append(ChatMessage("assistant", reply))
    finally:
        engine.close()

"""`tandem serve`: the loaded pair behind an OpenAI-compatible HTTP server (engine.serve)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import add_model_args, add_spec_args, load_config, spec_params
from engine.config import GenerationParams
from engine.errors import TandemError
from engine.serve.openai_api import Limits


def register(sub: Any) -> None:
    from engine.serve.server import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser(
        "serve",
        help="serve the model over an OpenAI-compatible HTTP API",
        description="Serve a model (and its drafter) over an OpenAI-compatible HTTP API: GET /v1/models, "
        "POST /v1/chat/completions, POST /v1/completions, GET /health. Every response carries llama-server's "
        "`timings` (draft_n, draft_n_accepted ...) plus Tandem's own speculation figures; a request with "
        '"speculative": false runs without speculation. Listens on loopback only unless --host says '
        "otherwise, which requires an API key.",
    )
    add_model_args(p)
    add_spec_args(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    g.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    g.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' (default: $TANDEM_API_KEY); needed off loopback",
    )
    g.add_argument("--api-key-file", type=Path, help="read the API key from this file (keeps it out of `ps`)")
    g.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN call the server (repeatable; default: none)",
    )
    g.add_argument("--model-name", help="the model id clients see (default: the model's own name)")
    g.add_argument(
        "--max-tokens-limit",
        type=int,
        default=Limits().max_tokens,
        help="largest max_tokens a request may ask",
    )
    g.add_argument(
        "--max-body-kib",
        type=int,
        default=Limits().max_body_bytes // 1024,
        help="largest request body, in KiB",
    )
    g.add_argument("--quiet", action="store_true", help="do not log each request")
    p.set_defaults(func=run)


def api_key(args: argparse.Namespace) -> str | None:
    key: str
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TandemError(f"cannot read the API key file {args.api_key_file}: {exc.strerror}") from None
        if not key:
            raise TandemError(f"the API key file {args.api_key_file} is empty")
        return key
    key = args.api_key or os.environ.get("TANDEM_API_KEY") or ""
    return key.strip() or None


def run(args: argparse.Namespace) -> int:
    from engine.serve.http import ServerOptions, build_app
    from engine.serve.queue import EngineThread
    from engine.serve.server import Address, bind, check_bind, serve_forever

    key = api_key(args)
    check_bind(args.host, key)  # before loading a model for nothing
    if args.max_tokens_limit < 1 or args.max_body_kib < 1:
        raise TandemError("--max-tokens-limit and --max-body-kib must be positive")
    config = load_config(args)
    base = GenerationParams(spec=spec_params(args))
    limits = Limits(
        max_body_bytes=args.max_body_kib * 1024,
        max_tokens=args.max_tokens_limit,
        default_max_tokens=min(Limits().default_max_tokens, args.max_tokens_limit),
    )
    sock = bind(args.host, args.port)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("tandem.serve").setLevel(logging.WARNING if args.quiet else logging.INFO)
    from engine.inference.session import ChatEngine

    try:
        engine = ChatEngine.load(config)
    except BaseException:
        sock.close()
        raise
    owner = EngineThread(engine, args.model_name)
    options = ServerOptions(
        api_key=key,
        cors_origins=tuple(args.cors_origin),
        limits=limits,
        base=base,
        loopback_only=key is None,
    )
    info = engine.info
    address = Address(args.host, int(sock.getsockname()[1]))
    print(
        f"[{info.model_name} · {info.n_ctx} ctx · drafter: {info.drafter or 'none'}"
        + (f" ({info.drafter_note})" if info.drafter_note else "")
        + "]",
        file=sys.stderr,
    )
    print(f"Tandem is serving on {address.url}/v1 (Ctrl+C stops)", file=sys.stderr, flush=True)
    try:
        serve_forever(build_app(owner, options), sock)
    finally:
        owner.close()
    return 0

"""Arguments shared by the subcommands that load a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config import (
    DEFAULT_N_BATCH,
    DEFAULT_N_CTX,
    MODEL_DRAFT_K_MAX,
    NGRAM_K_MAX,
    LoadConfig,
    SpecParams,
)
from engine.errors import TandemError

MODEL_DEFAULT_HELP = " (default: the embedded SmolLM2-135M)"


def add_model_args(
    p: argparse.ArgumentParser, *, model_required: bool = False, model_default: str = MODEL_DEFAULT_HELP
) -> None:
    """The options that say which model to load and how: the same spelling in every subcommand and the app."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        type=Path,
        required=model_required,
        help="target GGUF file" + ("" if model_required else model_default),
    )
    g.add_argument(
        "--draft-model", type=Path, help="a small draft model GGUF sharing the target's vocabulary"
    )
    g.add_argument("--assistant", type=Path, help="a Gemma 4 -assistant MTP drafter GGUF for a gemma4 target")
    g.add_argument(
        "--drafter",
        choices=["auto", "none", "ngram", "draft", "mtp"],
        default="auto",
        help="auto: MTP if available, else the draft model if given, else n-gram lookup (default: auto)",
    )
    g.add_argument(
        "--ctx", type=int, default=DEFAULT_N_CTX, help=f"context size in tokens (default: {DEFAULT_N_CTX})"
    )
    g.add_argument(
        "--gpu-layers", type=int, default=0, help="layers to offload to the GPU (-1: all; default 0)"
    )
    g.add_argument(
        "--threads", type=int, help="CPU threads (default: physical cores, one fewer while the CPU is busy)"
    )
    g.add_argument(
        "--batch", type=int, default=DEFAULT_N_BATCH, help=f"prompt batch size (default: {DEFAULT_N_BATCH})"
    )
    g.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto", help="flash attention")
    g.add_argument(
        "--kv-type", choices=["f16", "q8_0", "f32"], default="f16", help="KV cache type (default f16)"
    )


def load_config(args: argparse.Namespace) -> LoadConfig:
    model = args.model
    if model is None:
        from engine.store.default_model import default_model_path

        model = default_model_path()
        if model is None:
            raise TandemError(
                "no model given and the embedded default model is not installed: "
                "run `python -m engine.store.default_model` or pass --model PATH"
            )
    return config_from_args(args, model)


def config_from_args(args: argparse.Namespace, model: Path) -> LoadConfig:
    """The LoadConfig of `add_model_args`' options for `model`."""
    if args.ctx < 1 or args.batch < 1 or (args.threads is not None and args.threads < 1):
        raise TandemError("--ctx, --batch and --threads must be 1 or more")
    return LoadConfig(
        model_path=model,
        drafter=args.drafter,
        draft_model_path=args.draft_model,
        assistant_path=args.assistant,
        n_ctx=args.ctx,
        n_gpu_layers=args.gpu_layers,
        n_threads=args.threads,
        flash_attn={"auto": None, "on": True, "off": False}[args.flash_attn],
        kv_type=args.kv_type,
        n_batch=args.batch,
    )


def add_spec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speculation")
    g.add_argument(
        "--draft-max",
        type=int,
        help=f"longest draft verified per step (default: the drafter's own: n-gram {NGRAM_K_MAX}, "
        f"MTP and draft models {MODEL_DRAFT_K_MAX}); the adaptive controller picks up to this many",
    )
    g.add_argument("--fixed-k", action="store_true", help="always draft --draft-max tokens (no controller)")
    g.add_argument("--ngram-min", type=int, default=2, help="n-gram: shortest suffix matched (default 2)")
    g.add_argument("--ngram-max", type=int, default=4, help="n-gram: longest suffix matched (default 4)")


def spec_params(args: argparse.Namespace, *, enabled: bool = True) -> SpecParams:
    if args.draft_max is not None and args.draft_max < 0:
        raise TandemError("--draft-max must be 0 or more")
    if not 1 <= args.ngram_min <= args.ngram_max:
        raise TandemError("n-gram sizes must satisfy 1 <= --ngram-min <= --ngram-max")
    return SpecParams(
        enabled=enabled,
        k_max=args.draft_max,
        adaptive=not args.fixed_k,
        ngram_min=args.ngram_min,
        ngram_max=args.ngram_max,
    )

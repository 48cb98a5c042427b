"""Model names as people read them (issue 16: "Smollm2 135M 8k Lc100K Mix1 Ep2")."""

from __future__ import annotations

import pytest

from engine.store.names import display_name


@pytest.mark.parametrize(
    ("path", "general_name", "shown"),
    [
        # The catalog's name comes first, without its note in parentheses.
        ("e/SmolLM2-135M-Instruct.Q4_1.gguf", "Smollm2 135M 8k Lc100K Mix1 Ep2", "SmolLM2 135M Instruct"),
        ("gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf", None, "Gemma 4 E2B it"),
        # Else the file name as its author cased it, without the quantization tag or shard number.
        ("Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf", "Meta Llama 3.1 70B", "Meta Llama 3.1 70B Instruct"),
        ("Qwen3-30B-A3B-UD-Q4_K_XL-00001-of-00003.gguf", None, "Qwen3 30B A3B"),
        ("Phi-4-mini-IQ3_XXS.gguf", None, "Phi 4 mini"),
        # Else the file's own name, cleaned.
        ("gemma-3-270m-q4_k_m.gguf", "Gemma 3 270m", "Gemma 3 270m"),
        ("mistral-7b.Q4_K_M.gguf", "mistralai_Mistral-7B  v0.2", "mistralai Mistral-7B v0.2"),
        ("tiny.gguf", None, "tiny"),
    ],
)
def test_display_name(path: str, general_name: str | None, shown: str) -> None:
    assert display_name(path, general_name) == shown


def test_long_names_are_cut() -> None:
    assert len(display_name("x.gguf", "Word " * 40)) == 64


"""engine.store.gguf_select against llama.cpp's own rules (common/download.cpp): the file `-hf repo:TAG`
picks, and the MTP drafter `find_best_sibling` pairs with it, on listings shaped like the published repos."""

from __future__ import annotations

from engine.store.gguf_select import (
    drafter_files,
    find_best_model,
    find_best_sibling,
    is_model_file,
    model_files,
    quant_bits,
    split_files,
    split_info,
)

QAT = [
    ".gitattributes",
    "README.md",
    "MTP/gemma-4-E2B-it-assistant-Q8_0.gguf",
    "MTP/mtp-gemma-4-E2B-it-BF16.gguf",
    "gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf",
    "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf",
    "imatrix_unsloth.gguf",
    "mmproj-BF16.gguf",
    "mtp-gemma-4-E2B-it.gguf",
]


def test_split_info_and_bits_follow_llama_cpp() -> None:
    info = split_info("big-Q4_K_M-00002-of-00003.gguf")
    assert info is not None and (info.prefix, info.tag, info.index, info.count) == (
        "big-Q4_K_M",
        "Q4_K_M",
        2,
        3,
    )
    assert split_info("README.md") is None
    assert [
        quant_bits(p) for p in ("a-Q4_0.gguf", "a-F16.gguf", "a-UD-Q2_K_XL.gguf", "mtp-gemma-4-E2B-it.gguf")
    ] == [
        4,
        16,
        2,
        0,  # the tag of "…-it" is "IT": no number
    ]


def test_model_files_skip_sidecars_like_llama_cpp() -> None:
    assert not any(
        is_model_file(p) for p in ("mmproj-BF16.gguf", "imatrix_unsloth.gguf", "mtp-x.gguf", "a.md")
    )
    assert is_model_file("MTP/gemma-4-E2B-it-assistant-Q8_0.gguf")  # llama.cpp looks at the file name only
    # ...but Tandem never offers a file of an MTP/ folder as a model to chat with
    assert model_files(QAT) == ("gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf", "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf")
    assert drafter_files(QAT) == (
        "MTP/gemma-4-E2B-it-assistant-Q8_0.gguf",
        "MTP/mtp-gemma-4-E2B-it-BF16.gguf",
        "mtp-gemma-4-E2B-it.gguf",
    )


def test_find_best_model_by_tag() -> None:
    assert find_best_model(QAT, "UD-Q4_K_XL") == "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf"
    assert find_best_model(QAT, "ud-q2_k_xl") == "gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf"  # case-insensitive
    # The QAT repos have no Q8_0 target (the old catalog's mistake). llama.cpp's rule alone would take an
    # assistant kept in MTP/ under an old name for one; Tandem searches model_files, which leave MTP/ out.
    assert find_best_model(QAT, "Q8_0") == "MTP/gemma-4-E2B-it-assistant-Q8_0.gguf"
    assert find_best_model(model_files(QAT), "Q8_0") is None
    # no tag: Q4_K_M, then Q8_0, then the first model file in listing order
    assert find_best_model(model_files(QAT), None) == "gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf"
    assert find_best_model(["x-Q8_0.gguf", "x-Q4_K_M.gguf"], None) == "x-Q4_K_M.gguf"
    # the tag must be followed by '.' or '-' (Q4_K does not match Q4_K_M), later shards are skipped
    assert find_best_model(["x-Q4_K_M.gguf"], "Q4_K") is None
    split = ["x-Q8_0-00002-of-00002.gguf", "x-Q8_0-00001-of-00002.gguf"]
    assert find_best_model(split, "Q8_0") == "x-Q8_0-00001-of-00002.gguf"
    assert split_files(split, "x-Q8_0-00001-of-00002.gguf") == (split[1], split[0])


def test_drafter_is_the_root_mtp_file_not_the_mtp_folder() -> None:
    # a target at the root: MTP/ is a sub-folder, never searched (whatever its files are called)
    target = "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf"
    assert find_best_sibling(QAT, target, "mtp-", "UD-Q4_K_XL") == "mtp-gemma-4-E2B-it.gguf"
    assert find_best_sibling(["a.gguf", "MTP/mtp-a-Q8_0.gguf"], "a.gguf") is None


def test_sibling_ranking_depth_then_exact_tag_then_bits() -> None:
    files = [
        "mtp-m-Q8_0.gguf",
        "Q4_K_M/m-Q4_K_M.gguf",
        "Q4_K_M/mtp-m-Q4_0.gguf",
        "Q4_K_M/mtp-m-Q8_0.gguf",
        "other/mtp-m-Q4_K_M.gguf",  # another branch of the tree: never
    ]
    # the deepest shared folder wins over the root, then the closest bit width to the model's (4)
    assert find_best_sibling(files, "Q4_K_M/m-Q4_K_M.gguf") == "Q4_K_M/mtp-m-Q4_0.gguf"
    # an exact -TAG. match wins over the bit width
    assert find_best_sibling(files, "Q4_K_M/m-Q4_K_M.gguf", tag="Q8_0") == "Q4_K_M/mtp-m-Q8_0.gguf"
    # from the root, only root files qualify
    assert find_best_sibling(files, "m-Q4_K_M.gguf") == "mtp-m-Q8_0.gguf"
    # an ancestor folder is searched when the model's own folder has none
    assert find_best_sibling(["mtp-m.gguf", "Q8_0/m-Q8_0.gguf"], "Q8_0/m-Q8_0.gguf") == "mtp-m.gguf"

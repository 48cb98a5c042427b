"""Write the table of docs/fit-real-shapes.md: Tandem's memory estimate against llama.cpp's own dry-run
accounting for every catalog pair and quantization at 4k and 32k context, on skeleton GGUFs (real shapes and
types, no weights: tests/fixtures/skeletons.py, tests/engine/fit/real_shapes.py).

    python -m scripts.fit_table [--dir SKELETON_DIR] [--first-quant-only] > table.md

Takes about 1.5 min on 2 cores; the skeletons are sparse files (a few MB on disk each, up to 62 GB long).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from engine.store.catalog import load_catalog
from tests.engine.fit.real_shapes import Row, cases, measure
from tests.fixtures import skeletons


def _cell(row: Row, part: str) -> str:
    est, real = row.parts[part]
    if real == 0 and est == 0:
        return "0"
    return f"{est:,.0f} / {real:,.0f} ({row.error(part):+.1%})"


def table(rows: list[Row]) -> str:
    head = (
        "| pair | quant | ctx | weights | KV | compute | recurrent state | total | before download |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        est, real = r.total
        before = (r.catalog_mib - real) / real
        lines.append(
            f"| {r.pair_id} | {r.quant} | {r.n_ctx // 1024}k | {_cell(r, 'weights')} | {_cell(r, 'kv')} | "
            f"{_cell(r, 'compute')} | {_cell(r, 'state')} | "
            f"{est:,.0f} / {real:,.0f} ({r.total_error:+.2%}) | "
            f"{r.catalog_mib:,.0f} ({before:+.1%}) |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, help="where to keep the skeletons (default: a temporary folder)")
    parser.add_argument("--first-quant-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if not skeletons.sparse_files_work(directory):
            print(f"{directory} does not keep files sparse: skeletons would fill the disk", file=sys.stderr)
            return 1
        rows: list[Row] = []
        for pair, quant in cases(load_catalog(), first_quant_only=args.first_quant_only):
            print(f"{pair.id} {quant}…", file=sys.stderr)
            rows += measure(pair, quant, directory)
    print(table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`tandem models list | search QUERY | pull REPO[:FILE] | rm NAME | import PATH | fit PAIR`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from engine.cli.fit import add_fit_parser
from engine.store.download import DownloadProgress, download
from engine.store.hub import choose_gguf, drafter_files, repo_files, search, split_shards
from engine.store.model_store import ModelStore
from engine.text import shown
from engine.units import format_bytes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, search, download, import and remove models",
        description="Manage the models in Tandem's store (set TANDEM_DATA_DIR to relocate it).",
    )
    parser.set_defaults(func=_list, json=False)  # `tandem models` alone lists
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p = sub.add_parser("list", help="stored models with size, kind and source")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)

    p = sub.add_parser("search", help="search the Hugging Face Hub for GGUF repos")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_search)

    p = sub.add_parser(
        "pull",
        help="download a GGUF from the hub (resumes an interrupted download)",
        description="REPO alone takes the repo's only model file, or its Q4_K_M; REPO:FILE names the file; "
        "REPO:TAG picks by quantisation tag (as llama.cpp's -hf does).",
    )
    p.add_argument("target", metavar="REPO[:FILE]")
    p.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    p.add_argument("--with-drafter", action="store_true", help="also pull the repo's MTP drafter file(s)")
    p.add_argument("--no-hf-cache", action="store_true", help="download even if the HF cache has the file")
    p.set_defaults(func=_pull)

    p = sub.add_parser("rm", help="delete a stored model and report the space freed")
    p.add_argument("name", help="name as shown by `tandem models list`, or just its file name")
    p.set_defaults(func=_rm)

    p = sub.add_parser("import", help="validate a local GGUF and add it to the store")
    p.add_argument("path")
    p.set_defaults(func=_import)

    add_fit_parser(sub)


def _list(args: argparse.Namespace) -> int:
    store = ModelStore()
    entries = store.list()
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return 0
    if not entries:
        print(f"no models in {store.models_dir}; try `tandem models search QUERY` and `tandem models pull`")
    else:
        width = max(len(e.name) for e in entries)
        print(f"{'NAME':<{width}}  {'SIZE':>9}  {'KIND':<13}  SOURCE")
        for e in entries:
            print(f"{e.name:<{width}}  {format_bytes(e.size):>9}  {e.kind_label:<13}  {e.source}")
        print(f"{len(entries)} model(s), {format_bytes(sum(e.size for e in entries))} in {store.models_dir}")
    partials = store.partials()
    if partials:
        print("unfinished downloads (the same `tandem models pull` resumes them; deleting them is safe):")
        for path, size in partials:
            print(f"  {path} ({format_bytes(size)})")
    untracked = store.untracked()
    if untracked:
        print("not registered (add with `tandem models import PATH`):")
        for path in untracked:
            print(f"  {path}")
    return 0


def _search(args: argparse.Namespace) -> int:
    hits = search(args.query, limit=args.limit)
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], indent=1))
        return 0
    if not hits:
        print(f"no GGUF repos match {args.query!r}")
        return 0
    width = max(len(h.repo) for h in hits)
    print(f"{'REPO':<{width}}  {'DOWNLOADS':>9}  {'LIKES':>5}  {'GGUF':>4}  NOTES")
    for h in hits:
        notes = ", ".join(
            n for n, on in (("MTP drafter", h.has_mtp_drafter), ("gated: needs a token", h.gated)) if on
        )
        print(f"{h.repo:<{width}}  {h.downloads:>9}  {h.likes:>5}  {len(h.gguf_files):>4}  {notes}")
    return 0


def _hit_json(hit: Any) -> dict[str, Any]:
    return {
        "repo": hit.repo,
        "downloads": hit.downloads,
        "likes": hit.likes,
        "gguf_files": list(hit.gguf_files),
        "has_mtp_drafter": hit.has_mtp_drafter,
        "drafter_files": list(hit.drafter_files),
        "gated": hit.gated,
    }


def _pull(args: argparse.Namespace) -> int:
    repo, _, spec = args.target.partition(":")
    files, _gated = repo_files(repo, revision=args.revision)
    names = [f.filename for f in files]
    wanted = list(split_shards(names, choose_gguf(repo, names, spec or None)))
    drafters = [d for d in drafter_files(names) if d not in wanted]
    if args.with_drafter:
        wanted += drafters
    store = ModelStore()
    for filename in wanted:
        printer = _ProgressPrinter()
        try:
            path = download(
                repo,
                filename,
                revision=args.revision,
                store=store,
                progress=printer,
                use_hf_cache=not args.no_hf_cache,
            )
        except KeyboardInterrupt:
            printer.end()
            print("interrupted; run the same command again to resume the download", file=sys.stderr)
            return 130
        printer.end()
        entry = store.get(repo, filename)
        how = f" ({entry.source}, {entry.kind_label}, {format_bytes(entry.size)})" if entry else ""
        print(f"{repo}/{filename}{how}: {path}")
    if drafters and not args.with_drafter:
        print(f"this repo has an MTP drafter ({', '.join(drafters)}); add --with-drafter to pull it too")
    return 0


def _rm(args: argparse.Namespace) -> int:
    store = ModelStore()
    entry = store.find(args.name)
    freed = store.remove(entry.name)
    note = ""
    if freed == 0 and entry.size:
        note = " (its data is still held by another link to the same file, e.g. the Hugging Face cache)"
    print(f"removed {entry.name}; freed {format_bytes(freed)}{note}")
    return 0


def _import(args: argparse.Namespace) -> int:
    entry = ModelStore().import_file(args.path)
    # The name and kind come from the file: escaped, so a hostile name cannot drive the terminal.
    print(
        f"imported {shown(entry.name)} ({shown(entry.kind_label, 60)}, {format_bytes(entry.size)}): "
        f"{shown(str(entry.path), 300)}"
    )
    return 0


class _ProgressPrinter:
    """One self-rewriting status line on a terminal; a line every 10 s otherwise (logs, pipes)."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last_line = 0.0
        self._dirty = False

    def __call__(self, p: DownloadProgress) -> None:
        pct = 100 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
        eta = f"  ETA {_duration(p.eta_s)}" if p.eta_s is not None and p.bytes_done < p.bytes_total else ""
        line = (
            f"{p.file}  {format_bytes(p.bytes_done)} / {format_bytes(p.bytes_total)} ({pct:.0f}%)"
            f"  {format_bytes(p.rate_bps)}/s{eta}"
        )
        if self._tty:
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            self._dirty = True
        elif time.monotonic() - self._last_line >= 10 or p.bytes_done == p.bytes_total:
            self._last_line = time.monotonic()
            print(line, file=sys.stderr)

    def end(self) -> None:
        if self._dirty:
            sys.stderr.write("\n")
            self._dirty = False


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

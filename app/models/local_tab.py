"""On this computer: the downloaded, imported and bundled models with their kind, disk usage and fit badge,
unfinished downloads and unregistered files; pick a target's drafter among the local files (the usable
ones selectable, the others greyed with the failed rule), load, import or remove. Importing a model offers
the MTP drafter found beside it (engine.compat.discover), after checking it fits the model."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.fit_badge import BadgeLabel, set_item_badge
from app.models.pairing import DrafterList
from app.models.state import ManagerState, split_view
from engine.compat.discover import DrafterOffer, drafter_offer
from engine.compat.options import DrafterOption, local_drafter_options
from engine.errors import TandemError
from engine.fit.badges import FitBadge, file_badge
from engine.fit.hardware import HardwareInfo
from engine.fit.pair_plan import load_config
from engine.fit.planner import FitResult
from engine.gguf.metadata import GGUFInfo, read_gguf
from engine.store.default_model import default_model_path
from engine.store.model_store import KIND_LABELS, ModelEntry, ModelStore
from engine.units import format_bytes

ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 1
COL_NAME, COL_KIND, COL_SIZE, COL_SOURCE, COL_FIT = range(5)


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str  # the store's name (owner/repo/file, local/file) or the bundled model's file name
    path: Path
    size: int
    kind: str  # engine.store.model_store.ModelKind
    source: str
    removable: bool  # in the store's manifest (the bundled model is managed by its installer)
    info: GGUFInfo | None
    problem: str | None  # why the metadata could not be read

    @property
    def is_target(self) -> bool:
        return self.info is not None and self.kind != "mtp-assistant"


@dataclass(frozen=True, slots=True)
class LocalScan:
    models: tuple[LocalModel, ...]
    partials: tuple[tuple[Path, int], ...]
    untracked: tuple[Path, ...]
    models_dir: Path
    free_bytes: int


def scan(store: ModelStore) -> LocalScan:
    """Everything on disk, with each model's GGUF metadata (runs off the GUI thread)."""
    rows: list[LocalModel] = []
    entries: list[tuple[str, Path, int, str, str, bool]] = [
        (e.name, e.path, e.size, e.kind, e.source, True) for e in store.list()
    ]
    bundled = default_model_path()
    if bundled is not None:
        entries.append((bundled.name, bundled, bundled.stat().st_size, "plain", "bundled", False))
    for name, path, size, kind, source, removable in entries:
        try:
            info, problem = read_gguf(path), None
        except TandemError as exc:
            info, problem = None, exc.for_gui()
        rows.append(LocalModel(name, path, size, kind, source, removable, info, problem))
    untracked = tuple(p for p in store.untracked() if p != bundled)
    store.models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(store.models_dir).free
    return LocalScan(tuple(rows), tuple(store.partials()), untracked, store.models_dir, free)


def _list_badges(models: tuple[LocalModel, ...], hw: HardwareInfo, n_ctx: int) -> dict[Path, FitBadge]:
    return {m.path: file_badge(m.path, hw, n_ctx)[0] for m in models if m.is_target}


class LocalTab(QWidget):
    def __init__(self, state: ManagerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.scan: LocalScan | None = None
        self.model: LocalModel | None = None
        self.option: DrafterOption | None = None
        self.result: FitResult | None = None
        self._items: dict[Path, QTreeWidgetItem] = {}
        self._drafter_of: dict[Path, Path] = {}  # target -> the drafter imported with it (preselected)
        self._select_after_scan: Path | None = None  # a model just imported
        self._import_note: str | None = None  # what the import did, shown once it is selected

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Kind", "Size", "Source", "Fit on this computer"])
        self.tree.setAlternatingRowColors(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.tree.header()
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for col in (COL_KIND, COL_SIZE, COL_SOURCE, COL_FIT):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.currentItemChanged.connect(self._on_current)
        self.usage = QLabel()
        self.usage.setWordWrap(True)
        import_button = QPushButton("Import GGUF…")
        import_button.clicked.connect(self.import_file)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        left = QWidget()
        lay = QVBoxLayout(left)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tree, 1)
        row = QHBoxLayout()
        row.addWidget(self.usage, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(import_button)
        lay.addLayout(row)

        self.title = QLabel("Select a model")
        self.title.setStyleSheet("font-size: 15px; font-weight: 600;")
        self.title.setWordWrap(True)
        self.path_label = QLabel()
        self.path_label.setWordWrap(True)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.drafters = DrafterList()
        self.drafters.optionChosen.connect(self._on_option)
        self.badge = BadgeLabel(state.colors)
        self.memory = QLabel()
        self.memory.setWordWrap(True)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(self.remove)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # file names and hub messages are not markup
        details = QWidget()
        d = QVBoxLayout(details)
        d.addWidget(self.title)
        d.addWidget(self.path_label)
        d.addWidget(QLabel("<b>Drafter</b> (from the files on this computer)"))
        d.addWidget(self.drafters, 1)
        d.addWidget(self.badge)
        d.addWidget(self.memory)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        d.addLayout(buttons)
        d.addWidget(self.status)
        splitter = split_view(left, details)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter)

        state.hardwareChanged.connect(self.refresh_fits)
        state.contextChanged.connect(self.refresh_fits)
        state.colorsChanged.connect(lambda colors: self.badge.set_colors(colors))
        state.downloads.modelsChanged.connect(self.refresh)
        self._show_detail()
        self.refresh()

    # --- scanning -------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        store = self.state.store
        self.state.runner.run(lambda: scan(store), self._on_scan, self._on_error, key="local-scan")

    def _on_scan(self, result: LocalScan) -> None:
        self.scan = result
        current = self.model.path if self.model else None
        self.tree.clear()
        self._items = {}
        for m in result.models:
            kind = KIND_LABELS.get(m.kind, m.kind)  # type: ignore[call-overload]
            item = QTreeWidgetItem([m.path.name, kind, format_bytes(m.size), m.source, ""])
            item.setToolTip(COL_NAME, m.name)
            item.setToolTip(COL_SOURCE, m.name.rsplit("/", 1)[0] if m.source == "hub" else m.source)
            item.setData(COL_NAME, ROW_ROLE, m)
            if m.problem:
                item.setText(COL_FIT, "unreadable")
                item.setToolTip(COL_FIT, m.problem)
            elif not m.is_target:
                item.setText(COL_FIT, "drafter file")
            self.tree.addTopLevelItem(item)
            self._items[m.path] = item
        if not result.models:
            hint = QTreeWidgetItem(["No models yet: download a pair from the Catalog tab, or Import GGUF…"])
            hint.setFirstColumnSpanned(True)
            hint.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.tree.addTopLevelItem(hint)
        self._group("Unfinished downloads (downloading the same file again resumes them)", result.partials)
        self._group("Not registered (use Import GGUF…)", [(p, p.stat().st_size) for p in result.untracked])
        total = sum(m.size for m in result.models)
        self.usage.setText(
            f"{len(result.models)} model(s), {format_bytes(total)} in {result.models_dir} · "
            f"{format_bytes(result.free_bytes)} free on that disk"
        )
        wanted, self._select_after_scan = self._select_after_scan, None
        if wanted in self._items:
            current = wanted
        if current in self._items:
            self.tree.setCurrentItem(self._items[current])
        if self._import_note is not None:
            self.status.setText(self._import_note)
            self._import_note = None
        else:
            self.model = None
            self._show_detail()
        self.refresh_fits()

    def _group(self, title: str, files: list[tuple[Path, int]] | tuple[tuple[Path, int], ...]) -> None:
        if not files:
            return
        group = QTreeWidgetItem([title])
        group.setFirstColumnSpanned(True)
        for path, size in files:
            group.addChild(QTreeWidgetItem([path.name, "", format_bytes(size), str(path.parent.name), ""]))
        self.tree.addTopLevelItem(group)
        group.setExpanded(True)

    def refresh_fits(self) -> None:
        hw, result = self.state.hardware, self.scan
        if hw is None or result is None:
            return
        n_ctx = self.state.n_ctx
        self.state.runner.run(
            lambda: _list_badges(result.models, hw, n_ctx), self._on_badges, key="local-fits"
        )
        self._refresh_detail_fit()

    def _on_badges(self, badges: dict[Path, FitBadge]) -> None:
        for path, badge in badges.items():
            item = self._items.get(path)
            if item is not None:
                set_item_badge(item, COL_FIT, badge, self.state.colors)

    def _on_error(self, message: str) -> None:
        self.status.setText(message)

    # --- details --------------------------------------------------------------------------------------------
    def _on_current(self, item: QTreeWidgetItem | None, _previous: object = None) -> None:
        model = item.data(COL_NAME, ROW_ROLE) if item is not None else None
        self.model = model if isinstance(model, LocalModel) else None
        self.option = None
        self.result = None
        self.status.clear()
        if self.model is not None and self.model.is_target and self.scan is not None:
            assert self.model.info is not None
            infos = [m.info for m in self.scan.models if m.info is not None]
            options = local_drafter_options(self.model.info, infos)
            preferred = self._drafter_of.get(self.model.path)
            self.drafters.set_options(options, f"assistant:{preferred}" if preferred else None)
            self.option = self.drafters.selected
        else:
            self.drafters.set_options((), None)
        self._show_detail()
        self._refresh_detail_fit()

    def _on_option(self, option: DrafterOption) -> None:
        self.option = option
        self._refresh_detail_fit()

    def _refresh_detail_fit(self) -> None:
        model, option, hw = self.model, self.option, self.state.hardware
        self.badge.set_badge(None)
        self.memory.clear()
        self.result = None
        if model is None or option is None or hw is None or not model.is_target:
            return
        drafter = option.path if option.kind in ("assistant", "draft") else None
        n_ctx = self.state.n_ctx

        def estimate() -> tuple[FitBadge, FitResult | None]:
            return file_badge(model.path, hw, n_ctx, drafter=drafter, drafter_kind=option.kind)

        self.state.runner.run(estimate, self._on_detail_fit, key="local-detail")

    def _on_detail_fit(self, value: tuple[FitBadge, FitResult | None]) -> None:
        self.badge.set_badge(value[0])
        self.memory.setText("\n".join(value[0].breakdown))
        self.result = value[1]
        self.load_button.setEnabled(self.model is not None and self.model.is_target)

    def _show_detail(self) -> None:
        m = self.model
        self.title.setText(m.name if m else "Select a model")
        if m is None:
            self.path_label.setText("")
        elif m.problem:
            self.path_label.setText(f"{m.path}\n{m.problem}")
        elif not m.is_target:
            self.path_label.setText(
                f"{m.path}\nAn MTP assistant drafts for its Gemma 4 target: select the target."
            )
        else:
            self.path_label.setText(str(m.path))
        self.badge.setVisible(m is not None and m.is_target)
        self.load_button.setEnabled(False)  # enabled once the estimate is in
        self.remove_button.setEnabled(m is not None and m.removable)

    # --- actions --------------------------------------------------------------------------------------------
    def load(self) -> None:
        m, option, badge = self.model, self.option, self.badge.badge
        if m is None or option is None or not m.is_target:
            return
        drafter = option.path if option.kind in ("assistant", "draft") else None
        plan = None if badge is None or badge.needs_confirmation else self.result
        config = load_config(
            m.path, option, drafter, n_ctx=self.state.n_ctx, plan=plan, kv_type=self.state.kv_type
        )
        self.state.request_load(self, config, m.name, badge)

    def remove(self) -> None:
        m = self.model
        if m is None or not m.removable:
            return
        answer = QMessageBox.question(
            self, "Remove model", f"Delete {m.name} ({format_bytes(m.size)}) from disk?"
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            freed = self.state.store.remove(m.name)
        except TandemError as exc:
            self.status.setText(exc.for_gui())
            return
        self.status.setText(f"Removed {m.name}; freed {format_bytes(freed)}.")
        self.refresh()

    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.import_path(Path(path))

    def import_path(self, path: Path) -> None:
        """Import `path`; when an MTP drafter lies beside it, offer to import that too as its drafter."""
        store = self.state.store
        self.status.setText(f"Importing {path.name} (checking and hashing the file)…")

        def work() -> tuple[ModelEntry, DrafterOffer | None]:
            entry = store.import_file(path)
            return entry, (drafter_offer(path) if entry.kind != "mtp-assistant" else None)

        self.state.runner.run(work, lambda r: self._on_imported(path, *r), self._on_error)

    def _on_imported(self, path: Path, entry: ModelEntry, offer: DrafterOffer | None) -> None:
        self._import_note = f"Imported {path.name}."
        self._select_after_scan = entry.path
        if offer is not None and not offer.usable:
            self._import_note = f"Imported {path.name}; {offer.refusal}."
        elif offer is not None:
            answer = QMessageBox.question(
                self,
                "MTP drafter found",
                f"{offer.question[0].upper()}{offer.question[1:]}\n\n{offer.path} "
                f"({format_bytes(offer.size)}) is a Gemma 4 MTP assistant that fits this model: it drafts "
                "tokens the model then checks, so replies come faster and stay exactly the model's.",
            )
            if answer == QMessageBox.StandardButton.Yes:
                self._import_drafter(entry, offer)
                return
        self.refresh()

    def _import_drafter(self, target: ModelEntry, offer: DrafterOffer) -> None:
        store = self.state.store
        self.status.setText(f"Importing the drafter {offer.path.name}…")

        def done(drafter: ModelEntry) -> None:
            self._drafter_of[target.path] = drafter.path
            self._import_note = f"Imported {target.path.name} with its drafter {drafter.path.name}."
            self.refresh()

        self.state.runner.run(lambda: store.import_file(offer.path), done, self._on_error)

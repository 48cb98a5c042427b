"""Search tab: GGUF repositories on the Hugging Face Hub. The hub is contacted only when the user presses
Search (or opens a result's file list); offline or unreachable gives the engine's message, never a
traceback. A file is downloaded into the store through the Downloads tab, with its MTP drafter when the
user asks for it: the `mtp-*.gguf` llama.cpp's `-hf` pairs with that file (find_best_sibling), whose size the
repository's listing gives."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.state import ManagerState, split_view
from engine.fit.pair_plan import FileRef
from engine.store.hub import (
    RemoteFile,
    RepoHit,
    RepoListing,
    drafter_files,
    list_repo,
    model_files,
    search,
    split_shards,
)
from engine.units import format_bytes

HIT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
FILE_ROLE = int(Qt.ItemDataRole.UserRole) + 2
SEARCH_LIMIT = 30


class SearchTab(QWidget):
    def __init__(self, state: ManagerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.hits: list[RepoHit] = []
        self.files: tuple[RemoteFile, ...] = ()
        self.listing: RepoListing | None = None
        self.repo: str | None = None

        self.query = QLineEdit()
        self.query.setPlaceholderText("Search GGUF models on the Hugging Face Hub, e.g. gemma 4 or qwen3")
        self.query.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        self.message = QLabel("The hub is contacted only when you press Search.")
        self.message.setWordWrap(True)

        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Repository", "Downloads", "Likes", "GGUF files", "Notes"])
        self.results.setRootIsDecorated(False)
        self.results.setAlternatingRowColors(True)
        self.results.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.results.itemActivated.connect(lambda item, _col: self.show_files(item.data(0, HIT_ROLE)))
        self.results.currentItemChanged.connect(self._on_current)

        self.file_list = QTreeWidget()
        self.file_list.setHeaderLabels(["File", "Size", "Kind"])
        self.file_list.setRootIsDecorated(False)
        self.file_list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.files_button = QPushButton("Show files")
        self.files_button.setEnabled(False)
        self.files_button.clicked.connect(lambda: self.show_files(self._current_hit()))
        self.with_drafter = QCheckBox("Also download its MTP drafter")
        self.drafter_label = QLabel()
        self.drafter_label.setWordWrap(True)
        self.drafter_label.setTextFormat(Qt.TextFormat.PlainText)  # hub file names are not markup
        self.download_button = QPushButton("Download")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download)
        self.file_list.currentItemChanged.connect(lambda *_: self._update_buttons())

        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(self.search_button)
        right = QWidget()
        r = QVBoxLayout(right)
        r.setContentsMargins(0, 0, 0, 0)
        r.addWidget(self.files_button)
        r.addWidget(self.file_list, 1)
        r.addWidget(self.drafter_label)
        r.addWidget(self.with_drafter)
        r.addWidget(self.download_button)
        splitter = split_view(self.results, right)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(top)
        outer.addWidget(self.message)
        outer.addWidget(splitter, 1)

    def search(self) -> None:
        text = self.query.text().strip()
        if not text:
            self.message.setText("Type what to look for first.")
            return
        self.search_button.setEnabled(False)
        self.message.setText(f"Searching the hub for “{text}”…")
        self.state.runner.run(
            lambda: search(text, limit=SEARCH_LIMIT), self._on_hits, self._on_search_error, key="search"
        )

    def _on_hits(self, hits: list[RepoHit]) -> None:
        self.search_button.setEnabled(True)
        self.hits = hits
        self.results.clear()
        for hit in hits:
            notes = ", ".join(
                n for n, on in (("MTP drafter", hit.has_mtp_drafter), ("gated", hit.gated)) if on
            )
            item = QTreeWidgetItem(
                [hit.repo, f"{hit.downloads:,}", str(hit.likes), str(len(model_files(hit.gguf_files))), notes]
            )
            item.setData(0, HIT_ROLE, hit)
            for col in (1, 2, 3):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.results.addTopLevelItem(item)
        self.message.setText(
            f"{len(hits)} GGUF repositories; select one and press Show files (or double-click it)."
            if hits
            else "No GGUF repositories match."
        )

    def _on_search_error(self, message: str) -> None:
        self.search_button.setEnabled(True)
        self.message.setText(f"Search failed: {message}")

    def _current_hit(self) -> RepoHit | None:
        item = self.results.currentItem()
        return item.data(0, HIT_ROLE) if item is not None else None

    def _on_current(self, *_: object) -> None:
        self.files_button.setEnabled(self._current_hit() is not None)

    def show_files(self, hit: RepoHit | None) -> None:
        if hit is None:
            return
        self.repo = hit.repo
        self.file_list.clear()
        self.message.setText(f"Reading the file list of {hit.repo}…")
        repo = hit.repo
        self.state.runner.run(lambda: list_repo(repo), self._on_files, self._on_search_error, key="files")

    def _on_files(self, listing: RepoListing) -> None:
        self.listing = listing
        self.files = files = listing.files
        names = [f.filename for f in files]
        drafters = set(drafter_files(names))
        by_name = {f.filename: f for f in files}
        self.file_list.clear()
        for name in [*model_files(names), *sorted(drafters)]:
            shards = split_shards(names, name) if name not in drafters else (name,)
            size = sum(by_name[s].size for s in shards if s in by_name)
            kind = "MTP drafter" if name in drafters else ("split model" if len(shards) > 1 else "model")
            item = QTreeWidgetItem([name, format_bytes(size), kind])
            item.setData(0, FILE_ROLE, name)
            self.file_list.addTopLevelItem(item)
        self.with_drafter.setChecked(True)
        self.message.setText(f"{self.repo}: {self.file_list.topLevelItemCount()} GGUF file(s).")
        default = listing.best_drafter(None)
        for i in range(self.results.topLevelItemCount()):  # the listing gives the drafter's size
            row = self.results.topLevelItem(i)
            if row is None:
                continue
            hit: RepoHit = row.data(0, HIT_ROLE)
            if hit.repo == listing.repo and default is not None:
                notes = [f"MTP drafter ({format_bytes(listing.size_of([default]))})"] + ["gated"] * hit.gated
                row.setText(4, ", ".join(notes))
        self._update_buttons()

    def drafter_for(self, name: str | None) -> str | None:
        """The MTP drafter llama.cpp's -hf pairs with file `name` of the listed repo (None for a drafter)."""
        if self.listing is None or name is None or name in drafter_files([name]):
            return None
        return self.listing.best_drafter(name)

    def _update_buttons(self) -> None:
        item = self.file_list.currentItem()
        name = item.data(0, FILE_ROLE) if item is not None else None
        self.download_button.setEnabled(item is not None)
        drafter = self.drafter_for(name) if name else self.drafter_for(self._default_file())
        self.with_drafter.setEnabled(drafter is not None and item is not None)
        if drafter is not None and self.listing is not None:
            size = format_bytes(self.listing.size_of([drafter]))
            self.drafter_label.setText(f"MTP drafter available: {drafter} ({size})")
            self.with_drafter.setText(f"Also download its MTP drafter ({size})")
        else:
            self.drafter_label.setText("No MTP drafter beside this file." if self.listing else "")
            self.with_drafter.setText("Also download its MTP drafter")

    def _default_file(self) -> str | None:
        names = model_files(self.listing.paths) if self.listing is not None else ()
        return names[0] if names else None

    def download(self) -> None:
        item = self.file_list.currentItem()
        if item is None or self.repo is None:
            return
        name = item.data(0, FILE_ROLE)
        names = [f.filename for f in self.files]
        sizes = {f.filename: f.size for f in self.files}
        wanted = list(split_shards(names, name))
        drafter = self.drafter_for(name)
        if self.with_drafter.isChecked() and drafter is not None and drafter not in wanted:
            wanted.append(drafter)
        drafters = set(drafter_files(names))
        refs = tuple(
            FileRef("drafter" if f in drafters else "target", self.repo, f, sizes.get(f)) for f in wanted
        )
        job = self.state.downloads.enqueue(f"{self.repo}: {name}", refs)
        self.message.setText(
            "Download queued: see the Downloads tab." if job else "Already on this computer."
        )

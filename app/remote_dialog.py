"""The Remote engines dialog: add, edit, test and remove the servers a chat can run on."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.remote.client import RemoteEndpoint

HELP = (
    "A remote engine is an OpenAI-compatible server — llama-server, vLLM, or another Tandem "
    "(Server ▸ Start) — that a chat can run on instead of this computer's model. Choose it per chat in "
    "the list next to the Send button."
)


class _Probe(QObject):
    done = Signal(str)  # what the test found, in words

    def run(self, endpoint: RemoteEndpoint) -> None:
        threading.Thread(target=self._probe, args=(endpoint,), daemon=True).start()

    def _probe(self, endpoint: RemoteEndpoint) -> None:
        from engine.errors import TandemError
        from engine.remote.client import RemoteClient

        client = RemoteClient(endpoint)
        try:
            probe = client.probe()
        except TandemError as exc:
            self.done.emit(f"✗ {exc}")
            return
        finally:
            client.close()
        drafter = f", drafter: {probe.drafter}" if probe.drafter else ""
        models = f" ({len(probe.models)} models)" if len(probe.models) > 1 else ""
        self.done.emit(f"✓ {probe.kind}: model {probe.model or '?'}{models}{drafter}")


class RemoteEnginesDialog(QDialog):
    def __init__(self, endpoints: list[RemoteEndpoint], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Remote engines")
        self.endpoints = list(endpoints)
        self._probe = _Probe()  # no parent: a test still running when the dialog goes keeps it alive
        self._probe.done.connect(self._on_probed)
        layout = QVBoxLayout(self)
        intro = QLabel(HELP)
        intro.setWordWrap(True)
        layout.addWidget(intro)

        body = QHBoxLayout()
        left = QVBoxLayout()
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show)
        left.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        add, self.remove = QPushButton("Add"), QPushButton("Remove")
        add.clicked.connect(self._add)
        self.remove.clicked.connect(self._remove)
        buttons.addWidget(add)
        buttons.addWidget(self.remove)
        left.addLayout(buttons)
        body.addLayout(left, 1)

        form = QFormLayout()
        self.name = QLineEdit()
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://192.168.1.20:8080")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("none")
        self.model = QLineEdit()
        self.model.setPlaceholderText("the first model the server lists")
        for label, field in (
            ("Name", self.name),
            ("URL", self.url),
            ("API key", self.key),
            ("Model", self.model),
        ):
            form.addRow(label, field)
            field.textEdited.connect(self._edited)
        self.test = QPushButton("Test connection")
        self.test.clicked.connect(self._test)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.test)
        form.addRow("", self.test_result)
        self.form = QWidget()
        self.form.setLayout(form)
        body.addWidget(self.form, 2)
        layout.addLayout(body, 1)

        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.resize(720, 360)
        self._refill()

    def result_endpoints(self) -> list[RemoteEndpoint]:
        """The edited list: entries without a URL are dropped, names made unique."""
        seen: set[str] = set()
        out = []
        for e in self.endpoints:
            if not e.url.strip():
                continue
            name = e.name.strip() or e.label
            while name in seen:
                name += " (2)"
            seen.add(name)
            out.append(replace(e, name=name, url=e.url.strip()))
        return out

    def _refill(self, row: int = 0) -> None:
        self.list.clear()
        for e in self.endpoints:
            self.list.addItem(e.name or e.url or "(new engine)")
        self.form.setEnabled(bool(self.endpoints))
        self.remove.setEnabled(bool(self.endpoints))
        if self.endpoints:
            self.list.setCurrentRow(min(row, len(self.endpoints) - 1))

    @Slot(int)
    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.endpoints):
            return
        e = self.endpoints[row]
        self.name.setText(e.name)
        self.url.setText(e.url)
        self.key.setText(e.api_key or "")
        self.model.setText(e.model or "")
        self.test_result.setText("")

    def _edited(self, *_: object) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.endpoints):
            return
        self.endpoints[row] = RemoteEndpoint(
            url=self.url.text().strip(),
            api_key=self.key.text().strip() or None,
            model=self.model.text().strip() or None,
            name=self.name.text().strip(),
        )
        item = self.list.item(row)
        if item is not None:
            item.setText(self.endpoints[row].name or self.endpoints[row].url or "(new engine)")

    def _add(self) -> None:
        self.endpoints.append(RemoteEndpoint(url="", name=f"Server {len(self.endpoints) + 1}"))
        self._refill(len(self.endpoints) - 1)
        self.url.setFocus()

    def _remove(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.endpoints):
            del self.endpoints[row]
            self._refill(row)

    def _test(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.endpoints) or not self.endpoints[row].url:
            self.test_result.setText("Enter the server's URL first.")
            return
        self.test_result.setText("Connecting…")
        self._probe.run(self.endpoints[row])

    @Slot(str)
    def _on_probed(self, text: str) -> None:
        self.test_result.setText(text)


def manage_remote_engines(context: Any, parent: QWidget | None = None) -> bool:
    """Show the dialog; on OK, the edited list replaces the app's (app.remote_engines.RemoteEngines)."""
    dialog = RemoteEnginesDialog(context.remotes.endpoints, parent)
    if not dialog.exec():
        return False
    context.remotes.set_endpoints(dialog.result_endpoints())
    return True

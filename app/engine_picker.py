"""The Engine list above a chat: this computer's loaded model, or one of the remote engines (servers). A
chat remembers its choice in its settings; the list ends with "Remote engines…" to add one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QWidget

from app.chat_session import ChatSession
from app.remote_dialog import manage_remote_engines

MANAGE = "\x00manage"  # item data of "Remote engines…" (no engine name can be this)


class EnginePicker(QComboBox):
    def __init__(self, context: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.session: ChatSession | None = None
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.setMaximumWidth(220)
        self.activated.connect(self._on_activated)
        context.remotes.changed.connect(self.refill)
        context.remotes.engineChanged.connect(self._update_tip)
        self.refill()

    def detach(self) -> None:
        self.context.remotes.changed.disconnect(self.refill)
        self.context.remotes.engineChanged.disconnect(self._update_tip)
        self.bind(None)

    def bind(self, session: ChatSession | None) -> None:
        if self.session is not None:
            self.session.settingsChanged.disconnect(self.refill)
        self.session = session
        if session is not None:
            session.settingsChanged.connect(self.refill)
        self.refill()

    @Slot()
    def refill(self, *_: object) -> None:
        chosen = self.session.settings.engine if self.session is not None else ""
        names = self.context.remotes.names()
        self.blockSignals(True)
        self.clear()
        self.addItem("This computer", "")
        for name in names:
            self.addItem(name, name)
        if chosen and chosen not in names:
            self.addItem(f"{chosen} (removed)", chosen)
        self.insertSeparator(self.count())
        self.addItem("Remote engines…", MANAGE)
        self.setCurrentIndex(max(0, self.findData(chosen)))
        self.blockSignals(False)
        self.setEnabled(self.session is not None)
        self._update_tip()

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == MANAGE:
            manage_remote_engines(self.context, self.window())
            self.refill()
            return
        session = self.session
        if session is None or data == session.settings.engine:
            return
        if session.busy:  # a reply is being written by the other engine: switch after it
            self.context.statusMessage.emit("Stop the reply first, then switch the engine.")
            self.refill()
            return
        session.set_settings(replace(session.settings, engine=str(data)))
        if data:
            self.context.remotes.client(str(data))  # connect now, so the status is known before sending

    @Slot()
    def _update_tip(self, *_: object) -> None:
        name = self.session.settings.engine if self.session is not None else ""
        if not name:
            info = self.context.client.info
            model = f": {info.model_name}" if info is not None else " (no model loaded)"
            self.setToolTip(f"This chat runs on the model loaded on this computer{model}")
            return
        remotes = self.context.remotes
        endpoint = remotes.endpoint(name)
        client = remotes.client(name) if endpoint is not None else None
        if endpoint is None:
            self.setToolTip(f"The remote engine “{name}” was removed: this chat runs on this computer")
        elif name in remotes.errors:
            self.setToolTip(f"{endpoint.root}: could not connect — {remotes.errors[name]}")
        elif client is None or client.info is None:
            self.setToolTip(f"Connecting to {endpoint.root}…")
        else:
            info = client.info
            drafter = f", drafter: {info.drafter}" if info.drafter else ""
            self.setToolTip(f"{info.server} at {endpoint.root} · model {info.model_name}{drafter}")

"""Exporting a chat to a file and importing one: the file dialogs, the folder they open in (the Documents
folder at first, then the one last used), and the confirmation."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.context import AppContext

FOLDER_KEY = "export/folder"
FILTERS = {"md": "Markdown (*.md)", "json": "Tandem chat (*.json)"}


def export_folder() -> Path:
    saved = QSettings().value(FOLDER_KEY)
    if isinstance(saved, str) and Path(saved).is_dir():
        return Path(saved)
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents) if documents and Path(documents).is_dir() else Path.home()


def file_name(title: str, kind: str, when: float | None = None) -> str:
    """'Trip ideas for Kyoto 2025-05-01.md': the title made safe for every file system, and the date."""
    safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip() or "chat"
    return f"{safe[:80].strip()} {time.strftime('%Y-%m-%d', time.localtime(when))}.{kind}"


def export_chat(parent: QWidget, context: AppContext, chat_id: int | None, kind: str) -> Path | None:
    """Ask where to save the chat as Markdown ("md") or JSON ("json"), write it, and say where it went."""
    if chat_id is None:
        return None
    store = context.store
    title = store.chat(chat_id).title
    suggested = export_folder() / file_name(title, kind)
    chosen, _ = QFileDialog.getSaveFileName(parent, "Export chat", str(suggested), FILTERS[kind])
    if not chosen:
        return None
    path = Path(chosen)
    if path.suffix.lower() != f".{kind}":
        path = path.with_name(f"{path.name}.{kind}")
    if kind == "md":
        text = store.export_markdown(chat_id)
    else:
        text = json.dumps(store.export_json(chat_id), indent=2, ensure_ascii=False)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        QMessageBox.warning(parent, "Export failed", f"Could not write {path}: {exc.strerror or exc}")
        return None
    QSettings().setValue(FOLDER_KEY, str(path.parent))
    context.statusMessage.emit(f"Exported “{title}” to {path}")
    return path


def import_chat(parent: QWidget, context: AppContext) -> int | None:
    """Ask for a Tandem chat file and add it as a new chat; returns its id."""
    chosen, _ = QFileDialog.getOpenFileName(parent, "Import chat", str(export_folder()), FILTERS["json"])
    if not chosen:
        return None
    path = Path(chosen)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        chat_id = context.store.import_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        QMessageBox.warning(parent, "Import failed", f"{path.name} is not a chat Tandem can import: {exc}")
        return None
    QSettings().setValue(FOLDER_KEY, str(path.parent))
    context.chatsChanged.emit()
    context.statusMessage.emit(f"Imported “{context.store.chat(chat_id).title}” from {path.name}")
    return chat_id

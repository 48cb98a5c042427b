"""The drafter chooser of the manager's details panes: every candidate drafter for the chosen target, the
usable ones selectable, the others greyed out with the reason (engine.compat.options; the rule's id is for
tests and logs, not for people)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from engine.compat.options import DrafterOption

OPTION_ROLE = int(Qt.ItemDataRole.UserRole) + 1


def option_text(option: DrafterOption) -> str:
    # The kind is added only where the label does not already say it ("n-gram lookup (...)").
    kind = "" if option.label.startswith(option.kind_label) else f"  ·  {option.kind_label}"
    if option.compatible:
        return f"✓  {option.label}{kind}"
    return f"✗  {option.label}{kind}\n      {capitalised(option.reason or 'not usable with this target')}"


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


class DrafterList(QListWidget):
    """Choose one drafter; incompatible ones are listed disabled with their reason."""

    optionChosen = Signal(object)  # DrafterOption

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setWordWrap(True)
        self.setAlternatingRowColors(True)
        self.setMinimumHeight(120)
        self.options: tuple[DrafterOption, ...] = ()
        self.itemSelectionChanged.connect(self._on_selection)
        self._quiet = False

    def set_options(self, options: Sequence[DrafterOption], selected_key: str | None) -> None:
        """Show `options`; select the one with `selected_key` if usable, else the first usable one."""
        self._quiet = True
        self.clear()
        self.options = tuple(options)
        chosen: QListWidgetItem | None = None
        for option in self.options:
            item = QListWidgetItem(option_text(option))
            item.setData(OPTION_ROLE, option)
            if option.compatible:
                item.setToolTip(f"{option.kind_label}: can draft for this target")
                if chosen is None or option.key == selected_key:
                    chosen = item
            else:
                item.setFlags(Qt.ItemFlag.NoItemFlags)  # greyed, not selectable
                item.setToolTip(f"Not usable with this target: {option.reason}")
            self.addItem(item)
        if chosen is not None:
            chosen.setSelected(True)
            self.setCurrentItem(chosen)
        self._quiet = False

    @property
    def selected(self) -> DrafterOption | None:
        items = self.selectedItems()
        return items[0].data(OPTION_ROLE) if items else None

    def select_key(self, key: str) -> bool:
        for i in range(self.count()):
            item = self.item(i)
            option: DrafterOption = item.data(OPTION_ROLE)
            if option.key == key and option.compatible:
                self.setCurrentItem(item)
                item.setSelected(True)
                return True
        return False

    def _on_selection(self) -> None:
        option = self.selected
        if option is not None and not self._quiet:
            self.optionChosen.emit(option)

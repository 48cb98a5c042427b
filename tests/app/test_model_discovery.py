"""The model manager on the published repository layouts (tests/fakehub_layouts.py): the catalog looks its
files up in the hub's listing and shows the MTP drafter with its size, a missing file names what the repo
has instead, Search offers the drafter llama.cpp pairs with the chosen file, and importing a model offers
the drafter found beside it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.models.download_jobs import JobState
from app.models.pairing import OPTION_ROLE
from engine.store.model_store import ModelStore
from tests.app.test_model_manager import HUGE_GPU, model_store, open_manager  # noqa: F401 (fixtures)
from tests.fakehub import FakeHub
from tests.fakehub_layouts import blobs, unsloth_qat


@pytest.fixture
def qat_hub(monkeypatch: pytest.MonkeyPatch, model_store: ModelStore, tmp_path: Path) -> Iterator[FakeHub]:  # noqa: F811
    repo = unsloth_qat("E2B", blobs(tmp_path / "blobs"), real_drafter_size=False)
    del repo.files["gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf"]  # as if the repo had dropped it
    with FakeHub([repo]) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


def test_catalog_checks_the_hub_and_shows_the_drafter(qtbot, open_manager, qat_hub, model_store):  # noqa: F811
    manager = open_manager(HUGE_GPU)
    tab = manager.catalog_tab
    tab.select_pair("gemma4-e2b-mtp", "UD-Q4_K_XL")
    qtbot.waitUntil(lambda: tab.quant is not None and tab.quant.quant == "UD-Q4_K_XL")
    assert qat_hub.requests == []  # nothing is asked of the hub until the user asks
    qtbot.mouseClick(tab.check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.resolved is not None, timeout=10_000)
    text = tab.files.text()
    assert "mtp-gemma-4-E2B-it.gguf" in text and "MTP/" not in text
    assert "size and sha256 from the hub's listing" in text
    assert [r.filename for r in tab.refs()] == [
        "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf",
        "mtp-gemma-4-E2B-it.gguf",
    ]
    # with n-gram lookup chosen, the drafter beside the target is still pointed out, with its size
    ngram = next(tab.drafters.item(i) for i in range(tab.drafters.count())
                 if tab.drafters.item(i).data(OPTION_ROLE).kind == "ngram")  # fmt: skip
    tab.drafters.setCurrentItem(ngram)
    qtbot.mouseClick(tab.check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.resolved is not None, timeout=10_000)
    assert "MTP drafter available: mtp-gemma-4-E2B-it.gguf (" in tab.files.text()


def test_catalog_download_of_a_gone_file_names_the_alternatives(qtbot, open_manager, qat_hub):  # noqa: F811
    manager = open_manager(HUGE_GPU)
    tab = manager.catalog_tab
    tab.select_pair("gemma4-e2b-mtp", "UD-Q2_K_XL")
    qtbot.waitUntil(lambda: tab.quant is not None and tab.quant.quant == "UD-Q2_K_XL")
    qtbot.mouseClick(tab.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Could not get the files" in tab.status.text(), timeout=10_000)
    status = tab.status.text()
    assert "has no UD-Q2_K_XL file" in status and "UD-Q4_K_XL: gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf" in status
    assert manager.state.downloads.jobs == [] and tab.download_button.isEnabled()


def test_search_offers_the_drafter_beside_the_chosen_file(qtbot, open_manager, qat_hub, model_store):  # noqa: F811
    manager = open_manager(HUGE_GPU)
    tab = manager.search_tab
    tab.query.setText("gemma-4")
    tab.search()
    qtbot.waitUntil(lambda: tab.results.topLevelItemCount() == 1, timeout=10_000)
    assert tab.results.topLevelItem(0).text(4) == "MTP drafter"
    tab.results.setCurrentItem(tab.results.topLevelItem(0))
    tab.show_files(tab._current_hit())
    qtbot.waitUntil(lambda: tab.listing is not None, timeout=10_000)
    assert tab.results.topLevelItem(0).text(4).startswith("MTP drafter (")  # the listing gave its size
    files = {tab.file_list.topLevelItem(i).text(0): i for i in range(tab.file_list.topLevelItemCount())}
    tab.file_list.setCurrentItem(tab.file_list.topLevelItem(files["gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf"]))
    assert tab.drafter_label.text().startswith("MTP drafter available: mtp-gemma-4-E2B-it.gguf (")
    assert tab.with_drafter.isEnabled() and tab.with_drafter.isChecked()
    tab.download()
    (job,) = manager.state.downloads.jobs
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=10_000)
    # only the drafter llama.cpp pairs with the file: not the MTP/ folder's
    assert {e.filename for e in model_store.list()} == {
        "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf",
        "mtp-gemma-4-E2B-it.gguf",
    }


def test_import_offers_the_drafter_beside_the_model(
    qtbot, open_manager, model_store, tmp_path, monkeypatch, tiny_gemma4_path, tiny_gemma4_assistant_path,  # noqa: F811
):  # fmt: skip
    folder = tmp_path / "downloads" / "gemma"
    (folder / "Q4").mkdir(parents=True)
    target = folder / "Q4" / "tiny-gemma4-Q4_0.gguf"
    shutil.copy(tiny_gemma4_path, target)
    shutil.copy(tiny_gemma4_assistant_path, folder / "mtp-tiny-gemma4.gguf")  # one folder up
    asked: list[str] = []

    def question(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    manager = open_manager(HUGE_GPU)
    tab = manager.local_tab
    tab.import_path(target)
    names = {"local/tiny-gemma4-Q4_0.gguf", "local/mtp-tiny-gemma4.gguf"}
    qtbot.waitUntil(
        lambda: tab.scan is not None and names <= {m.name for m in tab.scan.models}, timeout=10_000
    )
    assert asked and asked[0].startswith(
        "Found mtp-tiny-gemma4.gguf beside this model: use it as the drafter?"
    )
    qtbot.waitUntil(lambda: tab.model is not None and tab.model.path.name == target.name)
    assert tab.drafters.selected is not None and tab.drafters.selected.path is not None
    assert tab.drafters.selected.path.name == "mtp-tiny-gemma4.gguf"
    assert "with its drafter mtp-tiny-gemma4.gguf" in tab.status.text()

"""Reproduce the app's screenshots into screenshots/out/ (git-ignored).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py [--theme dark] [--real MODEL.gguf]
        [--scene all|chat|manager|speed] [--vram-gb 8] [--ram-gb 32] [--size 1024x700]

--size sets the main window's size (and names the files after it): 1024x700 shows what a small screen gets,
with the speed panel docked beside the chat in the speed scene.

Runs the real windows against the fake engine of the GUI tests (scripted reply with Markdown, code, a table, a
link, raw HTML, emoji and CJK; speculative provenance varies token by token), or against a real model with
--real. History, settings and models go to a temporary folder; nothing of the user's is touched.

Chat scene: main window mid-stream; a second chat window waiting in the queue behind it; the same second
window after its reply; the provenance view; the settings dialog.

Manager scene (File ▸ Models…) on a simulated machine (--vram-gb, --ram-gb; 0 GiB = no GPU), downloading from
the local fake hub of the tests (tests/fakehub.py) so no network is used: the catalog with fit badges and the
drafter choice; a pair downloading; the same pair on this computer, paired and loaded.

Speed scene: the speed panel after a real A/B run (on the --real model, else on the tiny test fixture model:
always the real engine, since its figures are the point).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from app import theme  # noqa: E402
from app.chat_window import open_chat_window  # noqa: E402
from app.context import AppContext  # noqa: E402
from app.history.store import HistoryStore  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.records import ChatSettings  # noqa: E402
from app.worker import WorkerClient, default_engine_factory  # noqa: E402
from engine.config import LoadConfig  # noqa: E402
from engine.measure.pair_profile import ProfileStore  # noqa: E402

OUT = ROOT / "screenshots" / "out"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not reach the expected state")
        QApplication.processEvents()
        time.sleep(0.005)


def settle(seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def shoot(widget: QWidget, name: str) -> Path:
    settle()
    path = OUT / f"{name}.png"
    widget.grab().save(str(path))
    print(f"wrote {path}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--real", type=Path, help="use this GGUF with the real engine instead of the fake")
    parser.add_argument("--scene", choices=("all", "chat", "manager", "speed"), default="all")
    parser.add_argument("--vram-gb", type=float, default=8.0, help="manager scene: simulated GPU (0: none)")
    parser.add_argument("--ram-gb", type=float, default=32.0, help="manager scene: simulated free RAM")
    parser.add_argument("--size", help="main window size, WIDTHxHEIGHT (default: 1280x860, speed 1400x980)")
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.split("x")) if args.size else None
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tandem-shots-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    app = QApplication(sys.argv[:1])
    app.setOrganizationName("TandemScreenshots")
    app.setApplicationName("Tandem")
    colors = theme.apply(app, args.theme)
    suffix = ("" if args.theme == "light" else "_dark") + (f"_{args.size}" if args.size else "")

    if args.real:
        factory, model = default_engine_factory, args.real
    else:
        from tests.app.fake_engine import FakeOptions, fake_factory

        factory, model = fake_factory(FakeOptions(token_delay=0.02)), Path("SmolLM2-135M-Instruct.Q4_1.gguf")
    store = HistoryStore(tmp / "history.sqlite3")
    client = WorkerClient(factory, profiles=ProfileStore(tmp / "pair_profiles.json"))
    context = AppContext(store, client, colors)
    for title in ("Rust lifetimes, explained", "Trip ideas for Kyoto", "Fix my SQL query"):
        chat_id = store.create_chat(title)
        store.add_message(chat_id, "user", f"Question about {title.lower()}")
        store.add_message(chat_id, "assistant", f"An earlier answer about **{title}**.")
    window = MainWindow(context)
    window.resize(*(size or (1280, 860)))
    window.show()
    client.load(LoadConfig(model_path=model))
    wait_until(lambda: client.info is not None, 120)

    if args.scene in ("all", "chat"):
        chat_scene(window, context, suffix)
    if args.scene in ("all", "manager"):
        manager_scene(window, context, tmp, suffix, args.vram_gb, args.ram_gb, size)

    window.close()
    context.shutdown()
    QApplication.processEvents()
    store.close()

    if args.scene in ("all", "speed"):
        speed_scene(tmp, colors, args.real, suffix, size)
    return 0


def chat_scene(window: MainWindow, context: AppContext, suffix: str) -> None:
    window.new_chat()
    panel = window.panel
    panel.composer.setPlainText("Show me a Python snippet, a table and a link — and say hi in Japanese.")
    panel.send()
    session = panel.session
    assert session is not None
    wait_until(lambda: len(session.messages[-1].content) > 330 or session.state == "idle", 120)

    # A second window asks while the first is still generating: it waits in the queue.
    second_id = context.new_chat()
    second = open_chat_window(context, second_id)
    second.resize(720, 700)
    second.move(window.x() + 560, window.y() + 120)
    second.panel.composer.setPlainText("Meanwhile: what is speculative decoding?")
    second.panel.send()
    settle(0.2)
    shoot(window, f"main_window_mid_stream{suffix}")
    shoot(second, f"second_window_waiting{suffix}")

    wait_until(lambda: second.panel.session is not None and second.panel.session.state == "idle", 120)
    wait_until(lambda: session.state == "idle", 120)
    shoot(second, f"second_window_done{suffix}")

    panel.provenance_toggle.setChecked(True)
    shoot(window, f"provenance_view{suffix}")
    panel.provenance_toggle.setChecked(False)

    window.sidebar.search.setText("python")  # matches in titles and in replies, highlighted
    settle(0.4)
    shoot(window, f"search{suffix}")
    window.sidebar.search.setText("zebras")
    settle(0.4)
    shoot(window.sidebar, f"search_no_match{suffix}")
    window.sidebar.search.clear()
    settle(0.4)

    window.speed.show()  # docked beside the chat: the chat's own controls must stay readable
    shoot(window, f"main_window_docked{suffix}")
    window.speed.hide()

    from app.settings_dialog import ChatSettingsDialog

    dialog = ChatSettingsDialog(session.settings, window)
    dialog.show()
    shoot(dialog, f"settings_dialog{suffix}")
    dialog.close()

    second.close()

    # Regenerate keeps the first reply (‹ 2/2 ›); a model switch is named where it happens.
    panel.regenerate()
    wait_until(lambda: session.state == "idle", 120)
    client = context.client
    loaded = client.info
    client.load(LoadConfig(model_path=Path("gemma-3-270m-it-Q4_K_M.gguf"), drafter="none"))
    wait_until(lambda: client.info is not None and client.info is not loaded, 120)
    panel.composer.setPlainText("And in one sentence?")
    panel.send()
    wait_until(lambda: session.state == "idle", 120)
    shoot(window, f"versions_and_model_switch{suffix}")


def manager_scene(
    window: MainWindow,
    context: AppContext,
    tmp: Path,
    suffix: str,
    vram_gb: float,
    ram_gb: float,
    size: tuple[int, ...] | None,
) -> None:
    import os

    from huggingface_hub import constants

    import engine.store.download as dl
    from app.models.download_jobs import JobState
    from app.models.manager_window import ModelManager
    from engine.fit.hardware import fake_hardware
    from engine.store.model_store import ModelStore
    from tests.fakehub import FakeHub, FakeRepo
    from tests.fixtures.tiny_gemma4 import build_gemma4_assistant, build_gemma4_target

    # Models, the HF cache and the hub all live in the temporary folder: the tiny Gemma 4 fixture pair is
    # served under the catalog's E2B file names by the fake hub of the tests.
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        os.environ.pop(var, None)
    os.environ["TANDEM_DATA_DIR"] = str(tmp / "data")
    os.environ["HF_HUB_CACHE"] = str(tmp / "hf-cache")
    constants.HF_TOKEN_PATH = str(tmp / "no-token")
    repo = "unsloth/gemma-4-E2B-it-qat-GGUF"
    files = {
        "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf": build_gemma4_target(tmp / "t.gguf").read_bytes(),
        "mtp-gemma-4-E2B-it.gguf": build_gemma4_assistant(tmp / "a.gguf").read_bytes(),
    }
    store = ModelStore()
    store.import_file(
        build_gemma4_assistant(tmp / "gemma4-assistant-other-width.gguf", embedding_length_out=80)
    )
    hardware = fake_hardware(tuple(v for v in (vram_gb,) if v > 0), ram_gb=ram_gb)
    with FakeHub([FakeRepo(repo, files, downloads=1200)]) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        dl.CHUNK_BYTES = 16 * 1024
        hub.slow = (16 * 1024, 0.05)
        manager = ModelManager(context, window, hardware=hardware, store=store)
        window.models = manager
        manager.move(window.x() + 60, window.y() + 40)
        if size:
            manager.resize(*size)
        manager.show()
        tab = manager.catalog_tab
        wait_until(lambda: len(tab.fits) == len(tab.state.catalog.pairs))
        tab.select_pair("gemma4-e2b-mtp", "UD-Q4_K_XL")
        wait_until(lambda: tab.quant is not None)
        shoot(manager, f"manager_catalog{suffix}")

        tab.download()
        (job,) = manager.state.downloads.jobs
        manager.tabs.setCurrentWidget(manager.downloads_tab)
        wait_until(
            lambda: job.progress is not None and job.progress.bytes_done > job.progress.bytes_total * 0.4
        )
        shoot(manager, f"manager_downloads{suffix}")

        hub.slow = None
        wait_until(lambda: job.state is JobState.DONE)
        manager.tabs.setCurrentWidget(manager.local_tab)
        local = manager.local_tab
        wait_until(lambda: local.scan is not None and len(local.scan.models) == 3)
        target = local._items[store.path_for(repo, "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf")]
        local.tree.setCurrentItem(target)
        wait_until(lambda: local.load_button.isEnabled())
        local.load()
        wait_until(lambda: manager.load_status.text().startswith("Loaded"))
        shoot(manager, f"manager_local_loaded{suffix}")
        manager.shutdown()
        manager.close()


def tiny_fixture_model() -> Path:
    from tests.conftest import cached_build
    from tests.fixtures import tiny_llama

    return cached_build("tiny-llama", tiny_llama.__file__, tiny_llama.build_tiny_llama)


def speed_scene(
    tmp: Path, colors: theme.Colors, real: Path | None, suffix: str, size: tuple[int, ...] | None
) -> None:
    """A main window on the real engine: replies with speculation on, off, on again, then the A/B button, so
    every part of the speed panel has data."""
    model = real or tiny_fixture_model()
    store = HistoryStore(tmp / "speed.sqlite3")
    client = WorkerClient(default_engine_factory, profiles=ProfileStore(tmp / "speed_profiles.json"))
    context = AppContext(store, client, colors)
    window = MainWindow(context)
    window.resize(*(size or (1400, 980)))
    window.show()
    client.load(LoadConfig(model_path=model, n_ctx=2048))
    wait_until(lambda: client.info is not None, 120)
    panel = window.panel
    session = panel.session
    assert session is not None
    session.set_settings(ChatSettings(temperature=0.0, max_tokens=160, seed=7))
    window.speed.show()
    window.resizeDocks([window.speed], [min(460, window.width() // 3)], Qt.Orientation.Horizontal)
    prompts = (
        "Explain speculative decoding in three short sentences.",
        "Now list three fruits, one per line.",
        "Write a Python function that squares a number, then the same function with a docstring.",
    )
    for n, prompt in enumerate(prompts):
        panel.spec_toggle.setChecked(n != 1)  # the middle reply decodes plainly
        panel.composer.setPlainText(prompt)
        panel.send()
        wait_until(lambda: session.state == "idle", 300)
    panel.ab_button.click()
    wait_until(lambda: session.ab.state == "idle", 300)
    shoot(window, f"speed_panel{suffix}")
    shoot(window.speed.widget().widget(), f"speed_panel_whole{suffix}")  # the dock's content, unscrolled
    window.close()
    context.shutdown()
    QApplication.processEvents()
    store.close()


if __name__ == "__main__":
    sys.exit(main())

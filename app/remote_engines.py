"""Remote engines: OpenAI-compatible servers (llama-server, vLLM, another Tandem) a chat can run on instead
of the loaded model.

The list (name, URL, API key, model) persists in QSettings. Each engine in use gets its own `WorkerClient`
whose "model" is the server (engine.remote.engine.RemoteChatEngine; "loading" it probes the server), so a
chat on a remote engine streams, stops, regenerates and runs A/B through exactly the code a local chat uses,
on a thread of its own: a slow server never holds up the local queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal

from app.worker import WorkerClient
from engine.config import LoadConfig
from engine.remote.client import RemoteEndpoint

SETTINGS_KEY = "remote_engines/list"
MAX_ENGINES = 64


def load_endpoints() -> list[RemoteEndpoint]:
    """The saved list; entries that do not read as an engine are skipped."""
    raw = QSettings().value(SETTINGS_KEY, "")
    try:
        data = json.loads(str(raw)) if raw else []
    except ValueError:
        return []
    out: list[RemoteEndpoint] = []
    if not isinstance(data, list):
        return out
    for item in data[:MAX_ENGINES]:
        if isinstance(item, dict) and isinstance(item.get("url"), str) and isinstance(item.get("name"), str):
            key, model = item.get("api_key"), item.get("model")
            out.append(
                RemoteEndpoint(
                    url=item["url"],
                    api_key=key if isinstance(key, str) and key else None,
                    model=model if isinstance(model, str) and model else None,
                    name=item["name"],
                )
            )
    return out


def save_endpoints(endpoints: Sequence[RemoteEndpoint]) -> None:
    data = [
        {"name": e.name, "url": e.url, "api_key": e.api_key or "", "model": e.model or ""} for e in endpoints
    ]
    QSettings().setValue(SETTINGS_KEY, json.dumps(data))


def remote_factory(endpoint: RemoteEndpoint) -> Callable[..., Any]:
    """An engine factory for WorkerClient: connecting is the remote engine's "load"."""

    def factory(config: LoadConfig, progress: Callable[[float], bool] | None = None) -> Any:
        from engine.remote.engine import RemoteChatEngine

        return RemoteChatEngine.connect(endpoint, progress)

    return factory


class RemoteEngines(QObject):
    changed = Signal()  # the list changed
    engineChanged = Signal(str)  # a remote engine connected, failed or went away (its name)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.endpoints: list[RemoteEndpoint] = load_endpoints()
        self.errors: dict[str, str] = {}  # name -> why it could not connect
        self._clients: dict[str, WorkerClient] = {}
        self._connecting: set[str] = set()

    def names(self) -> list[str]:
        return [e.name for e in self.endpoints]

    def endpoint(self, name: str) -> RemoteEndpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def client(self, name: str) -> WorkerClient | None:
        """The engine's worker client, connecting it on first use; None for a name not in the list."""
        endpoint = self.endpoint(name)
        if endpoint is None:
            return None
        client = self._clients.get(name)
        if client is None:
            client = WorkerClient(remote_factory(endpoint), parent=self)
            client.modelLoaded.connect(lambda _info, n=name: self._on_connected(n))
            client.loadFailed.connect(lambda message, n=name: self._on_failed(n, message))
            self._clients[name] = client
            self._connect(name, client)
        return client

    def retry(self, name: str) -> None:
        """Connect again if the last attempt failed (a chat is about to send to it)."""
        client = self._clients.get(name)
        if client is not None and client.info is None and name not in self._connecting:
            self._connect(name, client)

    def _connect(self, name: str, client: WorkerClient) -> None:
        self._connecting.add(name)
        client.load(LoadConfig(model_path=Path(name)))

    def set_endpoints(self, endpoints: Sequence[RemoteEndpoint]) -> None:
        """Replace the list; engines removed or changed are disconnected (and reconnect on next use)."""
        new = {e.name: e for e in endpoints}
        for name in list(self._clients):
            if new.get(name) != self.endpoint(name):
                self._clients.pop(name).shutdown()
                self.errors.pop(name, None)
                self._connecting.discard(name)
        self.endpoints = list(endpoints)
        save_endpoints(self.endpoints)
        self.changed.emit()

    def shutdown(self) -> None:
        for client in self._clients.values():
            client.shutdown()
        self._clients.clear()
        self._connecting.clear()

    def _on_connected(self, name: str) -> None:
        self._connecting.discard(name)
        self.errors.pop(name, None)
        self.engineChanged.emit(name)

    def _on_failed(self, name: str, message: str) -> None:
        self._connecting.discard(name)
        self.errors[name] = message
        self.engineChanged.emit(name)


def engine_label(info: Any) -> str:
    """Which engine answered, as the history records it: 'llama-server at http://… · model' for a server,
    'model · drafter (this computer)' for the loaded pair."""
    endpoint = getattr(info, "endpoint", None)
    if endpoint:
        return f"{getattr(info, 'server', None) or 'server'} at {endpoint} · {info.model_name}"
    drafter = getattr(info, "drafter", None)
    return f"{info.model_name}" + (f" + {drafter}" if drafter else "") + " (this computer)"

"""A remote server presented to the app's worker like a loaded model: `connect` probes it (the "load"),
`chat` streams from it, `ab` compares plain and speculative where the server lets a request choose.

It is not a `ChatEngineAPI` (it has no tokenizer, KV cache or draft-length controller): the worker runs chat
and A/B requests on it and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.errors import TandemError
from engine.events import Event
from engine.inference.api import EngineInfo
from engine.measure.ab import ABReport, ABStep
from engine.remote.ab import iter_remote_ab
from engine.remote.client import RemoteClient, RemoteEndpoint, ServerProbe


def remote_info(endpoint: RemoteEndpoint, probe: ServerProbe) -> EngineInfo:
    note = None
    if probe.drafter is None:
        note = (
            "the server runs no drafter"
            if probe.speculating is False
            else f"{probe.kind} does not say how it drafts; each reply shows what it reported"
        )
    return EngineInfo(
        model_name=probe.model or endpoint.label,
        model_path=Path(probe.model or endpoint.label),
        architecture="remote",
        n_ctx=probe.n_ctx,
        drafter=probe.drafter,
        drafter_note=note,
        device=f"{probe.kind} at {endpoint.root}",
        n_gpu_layers=0,
        model_bytes=0,
        endpoint=endpoint.root,
        server=probe.kind,
        spec_per_request=probe.spec_per_request,
    )


class RemoteChatEngine:
    def __init__(self, endpoint: RemoteEndpoint, client: RemoteClient | None = None) -> None:
        self.endpoint = endpoint
        self.client = client or RemoteClient(endpoint)
        try:
            self.probe = self.client.probe()
        except BaseException:
            self.client.close()
            raise
        self.info = remote_info(endpoint, self.probe)

    @classmethod
    def connect(
        cls, endpoint: RemoteEndpoint, progress: Callable[[float], bool] | None = None
    ) -> RemoteChatEngine:
        if progress is not None and not progress(0.0):
            raise TandemError("connecting was cancelled")
        return cls(endpoint)

    def chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]:
        return self.client.chat(messages, params, cancel)

    def ab(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[ABStep | ABReport]:
        return iter_remote_ab(self.client, self.probe, messages, params, cancel)

    def reset(self) -> None:
        """Nothing to forget here: the server keeps (or drops) its own cache."""

    def close(self) -> None:
        self.client.close()

"""The GUI tests' fake engine must stay a faithful stand-in: every member of the engine protocol the app
relies on (engine.inference.api.ChatEngineAPI) exists on both the real ChatEngine and the fake, with the
same parameters, so a change to the real engine's surface fails here instead of passing in GUI tests."""

from __future__ import annotations

import inspect
from pathlib import Path

from engine.config import GenerationParams, LoadConfig
from engine.inference.api import ChatEngineAPI, GenerationRun
from engine.inference.generate import GenerationLoop
from engine.inference.session import ChatEngine
from tests.app.fake_engine import FakeChatEngine, FakeLoop, FakeOptions


def protocol_members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")}


def parameters(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def assert_same_surface(proto: type, real: type, fake: type, fake_instance: object) -> None:
    for name in protocol_members(proto):
        declared = inspect.getattr_static(proto, name)
        if isinstance(declared, property):
            assert hasattr(fake_instance, name), f"the fake lacks {name}"
            continue
        real_fn, fake_fn = getattr(real, name), getattr(fake, name)
        assert parameters(real_fn) == parameters(fake_fn), f"{name}: the fake's parameters differ"
        assert parameters(declared) == parameters(real_fn), f"{name}: the protocol's parameters differ"


def test_fake_engine_has_the_real_engines_surface() -> None:
    fake = FakeChatEngine(LoadConfig(model_path=Path("m.gguf")), FakeOptions())
    assert_same_surface(ChatEngineAPI, ChatEngine, FakeChatEngine, fake)
    # Properties of the protocol that the real engine sets in __init__ are checked by mypy (session.py).
    assert parameters(ChatEngine.load) == parameters(FakeChatEngine.load)[: len(parameters(ChatEngine.load))]


def test_fake_loop_has_the_real_loops_surface() -> None:
    fake = FakeChatEngine(LoadConfig(model_path=Path("m.gguf")), FakeOptions())
    loop = fake.make_loop(GenerationParams())
    assert_same_surface(GenerationRun, GenerationLoop, FakeLoop, loop)

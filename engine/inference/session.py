"""ChatEngine: a loaded target (+ drafter) serving chat requests, with the KV cache kept across turns.

The CLI, the benchmark and the app's worker thread all drive this one class. It is not thread-safe: one
thread owns it (the app's inference worker); other threads only flip a CancelToken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from engine.compat.mtp import MTPPlan
from engine.compat.rollback import rollback_refusal, rollback_snapshots
from engine.compat.vocab import check_draft_compatible
from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig, SpecParams
from engine.errors import ContextOverflowError, IncompatibleDrafterError, ModelFileError, TandemError
from engine.events import DoneEvent, Event, NoticeEvent, StopReason
from engine.fit.hardware import cpu_backend
from engine.gguf.metadata import NO_VOCAB_MODELS, GGUFInfo, read_gguf, validate_model_file
from engine.inference import probe
from engine.inference.api import EngineInfo
from engine.inference.chat_template import ChatTemplate, TemplateCancelled, render_with_fallback
from engine.inference.controller import DraftLengthController
from engine.inference.cost import CostCurve, calibrate
from engine.inference.drafters.base import Drafter, draft_k_max
from engine.inference.drafters.draft_model import DraftModelDrafter
from engine.inference.drafters.mtp import make_mtp_drafter, mtp_load_settings
from engine.inference.drafters.ngram import NGramDrafter
from engine.inference.generate import GenerationLoop
from engine.inference.llama import Context, KVSequence, Model
from engine.inference.sampling import resolve_seed
from engine.stats import GenerationStats

log = logging.getLogger("tandem.session")

MIN_REPLY_ROOM = 64  # tokens kept free for the reply when old turns have to be dropped
# Decoded only to time the target: any ordinary text (the values of the tokens do not change the cost).
CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog, then runs back into the forest to rest. "


def _cpu_label() -> str:
    """'CPU (haswell)': which of the installers' CPU backend variants llama.cpp chose, for the status bar."""
    cpu = cpu_backend()
    return cpu.label if cpu is not None else "CPU"


class ChatEngine:
    def __init__(
        self,
        config: LoadConfig,
        model: Model,
        ctx: Context,
        drafter: Drafter | None,
        drafter_note: str | None,
        drafter_bytes: int = 0,
    ) -> None:
        self.config = config
        self.model = model
        self.ctx = ctx
        self.drafter = drafter
        self.template = ChatTemplate(
            model.chat_template,
            bos_token=model.token_text(model.bos) if model.bos >= 0 else "",
            eos_token=model.token_text(model.eos) if model.eos >= 0 else "",
            architecture=model.architecture,
        )
        self._cancel: CancelToken | None = None  # of the request whose messages are being rendered
        self.seq = KVSequence(ctx)  # the target's cache and its tokens: the prompt cache across turns
        # What a decode of n tokens costs on this machine: shared by every controller, kept across requests.
        self.costs = CostCurve()
        self.controller = DraftLengthController.for_drafter(drafter, SpecParams(), self.costs)
        self.info = EngineInfo(
            model_name=model.name,
            model_path=model.path,
            architecture=model.architecture,
            n_ctx=ctx.n_ctx,
            drafter=drafter.name if drafter else None,
            drafter_note=drafter_note,
            device=_cpu_label() if config.n_gpu_layers == 0 else "GPU",
            n_gpu_layers=config.n_gpu_layers,
            model_bytes=model.size_bytes,
            drafter_bytes=drafter_bytes,
        )

    # --- loading --------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        config: LoadConfig,
        progress: Callable[[float], bool] | None = None,
        *,
        isolate: bool = True,
        on_stage: Callable[[str], None] | None = None,
    ) -> ChatEngine:
        """Validate the files from their metadata, make sure llama.cpp cannot crash this process on them
        (`isolate`: a child-process probe, once per file; engine.inference.probe), then load target and
        drafter. `on_stage(name)` hears "target" and "drafter" before each is opened (the probe child
        reports them to its parent)."""
        stage = on_stage or (lambda _name: None)
        info = validate_model_file(config.model_path)
        if info.kind == "gemma4-assistant":  # llama.cpp would refuse it later, with a context-size error
            raise ModelFileError(
                config.model_path,
                "this is a drafter (a Gemma 4 MTP assistant), not a model to chat with: load its target "
                "model and pair this file with it as its assistant",
            )
        _check_can_chat(info)
        wants_mtp = config.drafter in ("auto", "mtp") and config.assistant_path is not None
        assistant = read_gguf(config.assistant_path) if wants_mtp and config.assistant_path else None
        # MTP decides how the target is loaded (its NextN layers) and checks a named assistant against it:
        # all from metadata, before llama.cpp sees any file.
        mtp = mtp_load_settings(config, info, assistant)
        kind = _drafter_kind(config, mtp)
        if kind == "draft" and config.draft_model_path is not None:
            _check_can_chat(validate_model_file(config.draft_model_path))
        if isolate:
            probe.check_opens(config, progress)
        stage("target")
        model = Model(
            config.model_path, n_gpu_layers=config.n_gpu_layers, progress=progress, load_mtp=mtp.load_mtp
        )
        try:
            # The one rollback rule (engine.compat.rollback): a recurrent target keeps a state snapshot per
            # token its drafter may have to drop.
            n_rs_seq = rollback_snapshots(info.architecture, kind) if model.recurrent else 0
            ctx = _context(model, config, n_rs_seq=n_rs_seq)
        except BaseException:
            model.close()
            raise
        try:
            stage("drafter")
            drafter: Drafter | None
            note: str | None
            if kind != "none" and ctx.rollback_limit == 0:
                why = rollback_refusal(info.architecture) or "the model's recurrent state cannot roll back"
                drafter, note, extra = None, why, 0
            else:
                drafter, note, extra = _make_drafter(config, model, ctx, mtp, info, assistant)
        except BaseException:
            ctx.close()
            model.close()
            raise
        return cls(config, model, ctx, drafter, note, extra)

    # --- chat -----------------------------------------------------------------------------------------
    def render(self, messages: Sequence[ChatMessage]) -> tuple[list[int], str | None]:
        text, note = render_with_fallback(self.template, messages, self._cancel)
        tokens = self.model.tokenize(text, add_special=False, parse_special=True)
        if self.model.add_bos and self.model.bos >= 0 and (not tokens or tokens[0] != self.model.bos):
            tokens.insert(0, self.model.bos)
        return tokens, note

    def fit_messages(self, messages: Sequence[ChatMessage], max_tokens: int) -> tuple[list[int], list[str]]:
        """Render, dropping the oldest turns (never the system prompt or the last message) until the prompt
        leaves room for the reply. Returns the tokens and notices for the user."""
        notices: list[str] = []
        msgs = list(messages)
        room = min(max_tokens, max(MIN_REPLY_ROOM, self.ctx.n_ctx // 4))
        dropped = 0
        while True:
            tokens, note = self.render(msgs)
            if len(tokens) + room <= self.ctx.n_ctx:
                break
            droppable = [i for i, m in enumerate(msgs[:-1]) if m.role != "system"]
            if not droppable:
                raise ContextOverflowError(
                    f"the message needs {len(tokens)} tokens but the context holds {self.ctx.n_ctx} "
                    f"(with {room} kept for the reply): shorten it or load the model with a larger context"
                )
            # Drop a whole turn: the user message and the replies that answered it, so templates that insist
            # on user/assistant alternation still see a well-formed conversation.
            first = droppable[0]
            end = first + 1
            while end < len(msgs) - 1 and msgs[end].role == "assistant":
                end += 1
            dropped += end - first
            del msgs[first:end]
        if note:
            notices.append(note)
        if dropped:
            notices.append(
                f"dropped the {dropped} oldest message(s) to fit the {self.ctx.n_ctx}-token context"
            )
        return tokens, notices

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        cancel: CancelToken | None = None,
    ) -> Iterator[Event]:
        self._cancel = cancel  # a template that hangs stops on Stop too (chat_template's watchdog)
        try:
            tokens, notices = self.fit_messages(messages, params.max_tokens)
        except TemplateCancelled:
            yield DoneEvent("", StopReason.CANCELLED, GenerationStats(0, 0, 0.0, 0.0, 0, 0.0, 0.0))
            return
        finally:
            self._cancel = None
        for notice in notices:
            yield NoticeEvent(notice)
        if params.spec.enabled and self.drafter is None and self.info.drafter_note:
            yield NoticeEvent(f"speculative decoding is off: {self.info.drafter_note}")
        yield from self.generate(tokens, params, cancel)

    def complete(
        self, prompt: str, params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]:
        """Continue raw text, without the chat template (the server's /v1/completions)."""
        # add_special: BOS where the vocabulary wants one; parse_special off: the text is the client's, and
        # "<end_of_turn>" typed in it stays text.
        tokens = self.model.tokenize(prompt, add_special=True, parse_special=False)
        if not tokens:
            raise TandemError("the prompt is empty: there is nothing to continue")
        if len(tokens) + 1 >= self.ctx.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {len(tokens)} tokens but the context holds {self.ctx.n_ctx}: "
                "shorten it or load the model with a larger context"
            )
        if params.spec.enabled and self.drafter is None and self.info.drafter_note:
            yield NoticeEvent(f"speculative decoding is off: {self.info.drafter_note}")
        yield from self.generate(tokens, params, cancel)

    def generate(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        cancel: CancelToken | None = None,
        *,
        record_margins: bool = False,
    ) -> Iterator[Event]:
        """Generate from raw prompt tokens (the benchmark's entry point; chat() renders, then calls this)."""
        loop = self.make_loop(params, cancel, record_margins=record_margins)
        yield from loop.run(list(prompt))

    def make_loop(
        self, params: GenerationParams, cancel: CancelToken | None = None, *, record_margins: bool = False
    ) -> GenerationLoop:
        seed = resolve_seed(params.sampling)
        params = replace(params, sampling=replace(params.sampling, seed=seed))
        k_max = draft_k_max(self.drafter, params.spec)
        if self.controller.k_max != k_max or self.controller.adaptive != params.spec.adaptive:
            self.new_controller(params)
        return GenerationLoop(
            self.model,
            self.seq,
            params,
            seed=seed,
            drafter=self.drafter,
            controller=self.controller,
            cancel=cancel,
            record_margins=record_margins,
        )

    def new_controller(self, params: GenerationParams) -> None:
        """Forget the acceptance the draft-length controller learned: a fresh measurement. The cost curve is
        the machine's, not the request's: it is kept."""
        self.controller = DraftLengthController.for_drafter(self.drafter, params.spec, self.costs)

    def calibrate(self) -> dict[int, list[float]]:
        """Time verify decodes of the batch sizes the controller chooses between and seed the cost curve
        with them (a few seconds; the conversation cache is dropped). Returns the timings, for the pair
        profile to keep so the next load of this model on this machine needs none."""
        self.reset()
        filler = self.model.tokenize(CALIBRATION_TEXT, add_special=False)
        timings = calibrate(self.ctx, filler)
        self.reset()
        self.costs.seed(timings)
        return timings

    def reset(self) -> None:
        """Forget the cached conversation (KV cleared)."""
        self.seq.clear()
        if self.drafter:
            self.drafter.reset()

    def close(self) -> None:
        if self.drafter:
            self.drafter.close()
            self.drafter = None
        self.ctx.close()
        self.model.close()

    def __enter__(self) -> ChatEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_can_chat(info: GGUFInfo) -> None:
    """A file without a tokenizer is legal (embeddings) but cannot chat: llama.cpp asserts when asked to
    tokenize with it (llama.cpp `src/llama-vocab.cpp`, "Tokenizer not initialized")."""
    if info.vocab_model in NO_VOCAB_MODELS:
        raise ModelFileError(
            info.path,
            f"the file has no tokenizer (tokenizer.ggml.model is '{info.vocab_model}'): it cannot chat",
        )


def _drafter_kind(config: LoadConfig, mtp: MTPPlan) -> str:
    """The drafter a load will try first: "mtp", "draft", "ngram" or "none" (what _make_drafter builds,
    known before the target context is made, so the context keeps the snapshots it needs)."""
    kind = config.drafter
    if kind == "none":
        return "none"
    if kind in ("auto", "mtp") and mtp.kind is not None:
        return "mtp"
    if kind == "mtp":
        return "none"
    if kind in ("auto", "draft") and config.draft_model_path is not None:
        return "draft"
    return "none" if kind == "draft" else "ngram"


def _make_drafter(
    config: LoadConfig,
    model: Model,
    ctx: Context,
    mtp: MTPPlan,
    target_info: GGUFInfo,
    assistant_info: GGUFInfo | None,
) -> tuple[Drafter | None, str | None, int]:
    """Pick and build the drafter. A drafter that cannot run is a note, not a failure: plain decoding
    still works. Returns (drafter, note, bytes it adds)."""
    kind = config.drafter
    if kind == "none":
        return None, "no drafter selected", 0
    if kind in ("auto", "mtp"):
        drafter, note, extra = make_mtp_drafter(config, model, ctx, mtp, target_info, assistant_info)
        if drafter is not None or kind == "mtp":
            return drafter, note, extra
    if kind in ("auto", "draft") and config.draft_model_path is not None:
        return _make_draft_model(config, model)
    if kind == "draft":
        return None, "no draft model given", 0
    return NGramDrafter(), None, 0


def _make_draft_model(config: LoadConfig, target: Model) -> tuple[Drafter | None, str | None, int]:
    assert config.draft_model_path is not None  # validated from its metadata in ChatEngine.load
    draft = Model(config.draft_model_path, n_gpu_layers=config.n_gpu_layers)
    try:
        check_draft_compatible(target, draft)
    except IncompatibleDrafterError as exc:
        draft.close()
        return None, f"draft model incompatible: {exc.rule}: {exc.detail}", 0
    try:
        dctx = _context(draft, config)
    except TandemError:
        draft.close()
        raise
    return DraftModelDrafter(draft, dctx), None, draft.size_bytes


def _context(model: Model, config: LoadConfig, n_rs_seq: int = 0) -> Context:
    """A context with the user's settings: the target's and a draft model's must match (same n_ctx)."""
    return Context(
        model,
        n_ctx=config.n_ctx,
        n_batch=config.n_batch,
        n_threads=config.n_threads,
        flash_attn=config.flash_attn,
        kv_type=config.kv_type,
        n_rs_seq=n_rs_seq,
    )

"""One generation as an iterator of immutable events: prompt (with KV reuse), then steps of
propose -> one batched target decode -> verify -> rewind -> emit. Plain decoding is the same loop with an
empty proposal, so both paths share the sampler, the stop rules and the text stream."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from engine.config import CancelToken, GenerationParams
from engine.errors import KVRollbackError
from engine.events import DoneEvent, Event, StopReason, TokenEvent
from engine.inference.controller import OFF_REASON, DraftLengthController, ShadowDraft
from engine.inference.drafters.base import Drafter
from engine.inference.llama import KVSequence, Model, common_prefix
from engine.inference.sampling import Sampler, top2_margin
from engine.inference.textstream import TextStream
from engine.inference.verify import verify_draft
from engine.stats import GenerationStats, SpecRecorder, StepResult


class GenerationLoop:
    """Runs one request against a target whose KV holds exactly `seq.tokens`. The sequence is updated in
    place, so the caller's prompt cache stays true even after a cancel."""

    def __init__(
        self,
        model: Model,
        seq: KVSequence,
        params: GenerationParams,
        *,
        seed: int,
        drafter: Drafter | None = None,
        controller: DraftLengthController | None = None,
        cancel: CancelToken | None = None,
        record_margins: bool = False,
    ) -> None:
        self.model = model
        self.seq = seq
        self.ctx = seq.ctx
        self.params = params
        self.sampler = Sampler(params.sampling, seed)
        self.drafter = drafter if params.spec.enabled else None
        if self.drafter is not None:
            self.drafter.configure(params.spec)
        self.controller = controller or DraftLengthController.for_drafter(self.drafter, params.spec)
        self.cancel = cancel or CancelToken()
        self.record_margins = record_margins
        self.tokens: list[int] = []  # prompt + emitted tokens
        self.generated: list[int] = []  # emitted tokens only (no end-of-generation token)
        self.margins: list[float] = []  # top-2 logit gap behind each generated token (record_margins)
        self.rec = SpecRecorder(drafter=self.drafter.name) if self.drafter else None
        self._shadow = ShadowDraft()
        self._stream = TextStream(params.stop)
        self._stop: StopReason | None = None
        self._t0 = 0.0
        self._t_first: float | None = None
        self._t_last = 0.0

    # --- prompt ---------------------------------------------------------------------------------------
    def _load_prompt(self, prompt: Sequence[int]) -> int:
        """Bring the KV to `prompt` minus its last token's logits; returns how many tokens were reused."""
        reuse = common_prefix(self.seq.tokens, prompt)
        if reuse == len(prompt):
            reuse -= 1  # the last prompt token must be evaluated again to get its logits
        if reuse < len(self.seq):
            try:
                self.seq.rewind(reuse)
                # A sliding-window cache may have dropped positions the reused prefix still needs.
                stale_window = (
                    self.model.n_swa and reuse and self.ctx.pos_min() > max(0, reuse - self.model.n_swa)
                )
            except KVRollbackError:
                stale_window = True  # recurrent state keeps few snapshots: it cannot go back that far
            if stale_window:
                self.seq.clear()
                if self.drafter:
                    self.drafter.reset()
                reuse = 0
        # Chunk by chunk, so a cancel stops a long prompt and drafters that read the target's hidden rows
        # (MTP) copy each chunk's rows before the next decode reuses the buffer.
        for start in range(reuse, len(prompt), self.ctx.n_batch):
            if self.cancel.cancelled:
                self._stop = StopReason.CANCELLED
                return reuse
            chunk = prompt[start : start + self.ctx.n_batch]
            self.seq.decode(chunk, "last")
            if self.drafter:
                self.drafter.observe(chunk, start, len(chunk))
        # A recurrent target cannot drop its reply later by snapshots alone: remember its state after the
        # prompt, so the next turn's prompt cache goes back here instead of starting over (attention: no-op).
        self.seq.checkpoint()
        return reuse

    # --- emission -------------------------------------------------------------------------------------
    def _emit(self, token: int, depth: int) -> Iterator[TokenEvent]:
        now = time.perf_counter()
        if self.model.is_eog(token):
            self._stop = StopReason.EOG
            return
        self._t_first = self._t_first or now
        self._t_last = now
        position = len(self.tokens)
        self.tokens.append(token)
        self.generated.append(token)
        if self.rec:
            self.rec.provenance.append(depth)
        text = self._stream.feed(self.model.piece(token))
        if self._stream.stopped:
            self._stop = StopReason.STOP_STRING
        elif len(self.generated) >= self.params.max_tokens:
            self._stop = StopReason.MAX_TOKENS
        yield TokenEvent(token, text, position, depth, elapsed_s=now - self._t0)

    def _pick(self, row: int, position: int, draft: Sequence[int]) -> int:
        logits = self.ctx.logits(row)
        if self.record_margins:
            self.margins.append(top2_margin(logits))
        history: Sequence[int] = ()
        if self.params.sampling.repeat_penalty != 1.0:
            history = [*self.tokens, *draft[:row]]
        return self.sampler.sample(logits, position, history)

    # --- the loop -------------------------------------------------------------------------------------
    def run(self, prompt: Sequence[int]) -> Iterator[Event]:
        self._t0 = time.perf_counter()
        if not prompt:
            # Nothing to decode: the first pick would read the logits left over from an earlier decode.
            raise ValueError("the prompt is empty: generation needs at least one token (e.g. BOS)")
        if len(prompt) >= self.ctx.n_ctx:
            raise ValueError("prompt does not fit the context; the session must trim it first")
        self.tokens = list(prompt)
        reuse = self._load_prompt(prompt)
        t_prompt = time.perf_counter() - self._t0
        if self.params.max_tokens <= 0 and self._stop is None:
            self._stop = StopReason.MAX_TOKENS
        if self._stop is None:
            yield from self._emit(self._pick(-1, len(prompt), ()), 0)
        while self._stop is None:
            if self.cancel.cancelled:
                self._stop = StopReason.CANCELLED
                break
            if len(self.seq) + 1 >= self.ctx.n_ctx:
                self._stop = StopReason.CONTEXT_FULL
                break
            yield from self._step()
        self._t_last = self._t_last or time.perf_counter()
        tail = self._stream.finish()
        if tail:
            yield TokenEvent(self.generated[-1], tail, len(self.tokens) - 1, 0, self._t_last - self._t0)
        yield DoneEvent(
            text=self._stream.text, stop_reason=self._stop, stats=self._stats(len(prompt), reuse, t_prompt)
        )

    def _step(self) -> Iterator[TokenEvent]:
        t_step = time.perf_counter()
        n_past = len(self.seq)
        # The verify batch [last, *draft] needs logits for every row, so it must fit one decode batch; a
        # recurrent target can drop at most `rollback_limit` rejected tokens afterwards.
        room = min(
            self.params.max_tokens - len(self.generated) - 1,
            self.ctx.n_ctx - n_past - 2,
            self.ctx.n_batch - 1,
        )
        if self.seq.rollback_limit is not None:
            room = min(room, self.seq.rollback_limit)
        draft = self._propose(room)
        t_draft = time.perf_counter() - t_step

        batch = [self.tokens[-1], *draft]
        t_dec = time.perf_counter()
        self.seq.decode(batch, "all" if draft else "last")
        self.ctx.synchronize()
        t_verify = time.perf_counter() - t_dec  # llama_decode alone: sampling counts as "other"
        verdict = verify_draft(draft, lambda i: self._pick(i, n_past + 1 + i, draft))
        n_keep = 1 + verdict.n_accepted
        self.seq.rewind(n_past + n_keep)
        if self.drafter:
            self.drafter.observe(batch, n_past, n_keep)
        result = StepResult(
            drafted=len(draft),
            accepted=verdict.n_accepted,
            emitted=verdict.emitted,
            draft_s=t_draft,
            verify_s=t_verify,
            rolled_back=n_keep < len(batch),
        )
        self.controller.record_step(result)
        if self.rec:
            self.rec.record(result)
        for i, token in enumerate(result.emitted):
            yield from self._emit(token, result.depth(i))
            if self._stop is not None:
                break
        shadow = self._shadow.check(self.tokens)
        if shadow is not None:
            self.controller.record_result(*shadow)
        if self.rec:
            self.rec.other_s += time.perf_counter() - t_step - t_draft - t_verify

    def _propose(self, room: int) -> tuple[int, ...]:
        """The draft to verify this step (empty: a plain decode). Free drafters (n-gram) propose first and
        the controller trims the proposal to what pays; costly ones are asked only for the length the
        controller chose, and their time per token counts against drafting."""
        if self.drafter is None or room <= 0:
            return ()
        t0 = time.perf_counter()
        if self.drafter.cheap:
            proposal = self.drafter.draft(self.tokens, min(self.controller.k_max, room))
            if not proposal.tokens:
                self._note(proposal.reason or "drafter proposed nothing")
                return ()
            choice = self.controller.choose(
                available=len(proposal.tokens), match_len=proposal.match_len, disputed_at=proposal.disputed_at
            )
            if choice.reason:
                self._note(choice.reason)
            if choice.k == 0:
                # Declined proposals are still evidence: the target's own next tokens settle them.
                self._shadow.watch(
                    len(self.tokens),
                    proposal.tokens,
                    self.controller.last_class,
                    self.controller.last_disputed_at,
                )
            return proposal.tokens[: choice.k]
        choice = self.controller.choose()
        k = max(0, min(choice.k, room))
        if k == 0:
            if choice.reason:
                self._note(choice.reason)
            return ()
        proposal = self.drafter.draft(self.tokens, k)
        draft = proposal.tokens[:k]
        self.controller.record_draft(len(draft), time.perf_counter() - t0 - proposal.catch_up_s)
        if not draft:
            self._note(proposal.reason or "drafter proposed nothing")
        return draft

    def _note(self, reason: str) -> None:
        if self.rec:
            detail = self.controller.off_detail() if reason == OFF_REASON else None
            self.rec.record_reason(reason, detail)

    def _stats(self, n_prompt: int, reuse: int, t_prompt: float) -> GenerationStats:
        end = time.perf_counter()
        first = self._t_first or end
        return GenerationStats(
            n_prompt=n_prompt,
            n_prompt_cached=reuse,
            prompt_s=t_prompt,
            ttft_s=first - self._t0,
            n_generated=len(self.generated),
            decode_s=max(0.0, self._t_last - first),
            total_s=end - self._t0,
            spec=self.rec.snapshot() if self.rec else None,
        )

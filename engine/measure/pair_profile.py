"""What this machine has learned about a model pair: how often the drafter's tokens are accepted (per draft
depth), what a target decode of n tokens costs (the cost curve's recent timings per batch size, seeded by a
short calibration the first time the pair is loaded here), and what a draft token costs. From these the
draft-length controller's own model predicts the speedup of speculation before the user turns it on; a clean
A/B measurement, when there is one, outranks that prediction.

One small JSON file under the data dir holds every pair, keyed by the target file and the drafter (file name
and size) and the device. It is written atomically (temporary file, then rename); a corrupt file is moved
aside and the profiles start again empty, so a bad file never stops the app.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from engine.config import LoadConfig
from engine.inference.api import EngineInfo
from engine.inference.controller import DraftLengthController
from engine.inference.cost import WINDOW, CostCurve
from engine.paths import data_dir
from engine.stats import GenerationStats

log = logging.getLogger("tandem.pair_profile")

FILE_NAME = "pair_profiles.json"
FILE_VERSION = 2  # 2: decode timings are the cost curve's recent samples per size (1: one smoothed value)
READABLE_VERSIONS = (1, 2)
EVIDENCE_CAP = 2000.0  # drafts kept per depth: older evidence is scaled down so the profile follows drift
MIN_EVIDENCE = 8  # first-depth drafts needed before a prediction is shown


class Calibratable(Protocol):
    """What ProfileStore.prepare needs of an engine (engine.inference.api.ChatEngineAPI)."""

    @property
    def costs(self) -> CostCurve: ...

    def calibrate(self) -> dict[int, list[float]]: ...


def _clean_samples(decode_s: Mapping[int, Sequence[float]]) -> dict[int, tuple[float, ...]]:
    """Positive, finite timings only (a clock that did not tick reads 0.0), the most recent WINDOW."""
    out = {}
    for n, values in decode_s.items():
        kept = tuple(float(x) for x in values if x > 0 and math.isfinite(x))[-WINDOW:]
        if n >= 1 and kept:
            out[int(n)] = kept
    return out


@dataclass(frozen=True, slots=True)
class PairKey:
    key: str  # stable identity: target file + size, drafter + its file + size, device
    label: str  # for people: "SmolLM2-135M-Instruct.Q4_1 + n-gram"


def _file_id(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return f"{path.name}:{path.stat().st_size}"
    except OSError:
        return path.name


def pair_key(config: LoadConfig, info: EngineInfo) -> PairKey:
    drafter = info.drafter or "none"
    drafter_file = config.assistant_path or config.draft_model_path
    # The thread count changes every decode's cost: another setting is another curve.
    device = f"{info.device}:{info.n_gpu_layers}:t{config.n_threads or 'auto'}"
    key = "|".join((_file_id(config.model_path), drafter, _file_id(drafter_file), device))
    return PairKey(key, f"{config.model_path.stem} + {drafter}")


@dataclass(frozen=True, slots=True)
class Prediction:
    speedup: float  # predicted decode tok/s with speculation over plain (1.0: no gain)
    k: int  # the draft length that gives it (0: speculation would not pay on this machine)
    acceptance: float  # share of first draft tokens accepted
    verify_ratio: float | None  # cost of verifying k+1 tokens in one decode over decoding one
    evidence: int  # first-depth drafts behind the acceptance figure
    last_ab: float | None  # speedup measured by the last A/B run of this pair

    def short(self) -> str:
        # A clean A/B of this pair measured what the model only predicts: it outranks the prediction.
        if self.last_ab is not None:
            return f"measured {self.last_ab:.2f}× (A/B)"
        return f"expected ≈{self.speedup:.1f}×"

    def detail(self) -> str:
        verify = (
            f"verifying {self.k + 1} tokens at once costs {self.verify_ratio:.1f}× one token"
            if self.verify_ratio is not None and self.k > 0
            else "verify cost not measured yet"
        )
        lines = [
            f"Predicted from {self.evidence} drafts on this machine: {self.acceptance:.0%} of first drafts "
            f"accepted; {verify}.",
            f"Best draft length: {self.k}." if self.k else "Speculation would not pay for this pair here.",
            "The prediction counts model time only; sampling and bookkeeping make the real gain a bit lower.",
        ]
        if self.last_ab is not None:
            lines.append(
                f"Last clean A/B run measured {self.last_ab:.2f}× (the model predicts ≈{self.speedup:.1f}×)."
            )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class PairProfile:
    key: str
    label: str
    drafted: tuple[float, ...]  # per depth i: drafts that reached depth i+1 (scaled to EVIDENCE_CAP)
    accepted: tuple[float, ...]  # of those, accepted
    decode_s: tuple[tuple[int, tuple[float, ...]], ...]  # per batch size n: recent seconds of a decode
    draft_s: float | None  # drafter seconds per token (None: free, or not measured)
    generations: int = 0
    last_ab: float | None = None  # speedup of the last clean A/B run
    updated_at: float = 0.0
    calibrated: bool = False  # the cost curve was seeded by a calibration on this machine

    def learn(
        self, stats: GenerationStats, decode_s: Mapping[int, Sequence[float]], draft_s: float | None
    ) -> PairProfile:
        """The profile after one more generation (plain generations only refresh the timings). `decode_s`:
        the engine's cost curve (CostCurve.samples), which was seeded from this profile, so it replaces the
        sizes it has; its robust estimates are what one slow step cannot poison."""
        drafted, accepted = list(self.drafted), list(self.accepted)
        spec = stats.spec
        if spec is not None and spec.drafted:
            depth = len(spec.drafted_by_position)
            drafted += [0.0] * (depth - len(drafted))
            accepted += [0.0] * (depth - len(accepted))
            for i in range(depth):
                drafted[i] += spec.drafted_by_position[i]
                accepted[i] += spec.accepted_by_position[i]
            if drafted[0] > EVIDENCE_CAP:
                scale = EVIDENCE_CAP / drafted[0]
                drafted = [d * scale for d in drafted]
                accepted = [a * scale for a in accepted]
        times = dict(self.decode_s)
        times.update(_clean_samples(decode_s))
        return replace(
            self,
            drafted=tuple(drafted),
            accepted=tuple(accepted),
            decode_s=tuple(sorted(times.items())),
            draft_s=draft_s if draft_s is not None else self.draft_s,
            generations=self.generations + 1,
            updated_at=time.time(),
        )

    def conditional_acceptance(self) -> list[float]:
        """Chance that draft token i+1 is accepted given the ones before it were. The counts give the chance
        that depth i+1 is accepted at all among drafts that reached it; the ratio of successive depths is the
        conditional chance (exact when the draft length does not depend on how well drafting goes)."""
        chain = [a / d if d > 0 else 0.0 for a, d in zip(self.accepted, self.drafted, strict=True)]
        out: list[float] = []
        for i, c in enumerate(chain):
            prev = chain[i - 1] if i else 1.0
            out.append(min(1.0, c / prev) if prev > 0 else 0.0)
        return out

    def curve(self) -> CostCurve:
        """The learned cost curve, to seed an engine with."""
        return CostCurve(dict(self.decode_s))

    def seed(self, timings: Mapping[int, Sequence[float]]) -> PairProfile:
        """The profile with a calibration's timings as its cost curve."""
        times = dict(self.decode_s)
        times.update(_clean_samples(timings))
        return replace(self, decode_s=tuple(sorted(times.items())), calibrated=True, updated_at=time.time())

    def predict(self) -> Prediction | None:
        """The controller's model applied to what was learned; None until there is enough evidence."""
        if not self.drafted or self.drafted[0] < MIN_EVIDENCE or not self.decode_s:
            return None
        accept = self.conditional_acceptance()
        ctl = DraftLengthController.from_estimates(accept, self.curve(), self.draft_s)
        k, speedup = ctl.best()
        t1, tk = ctl.decode_time(1), ctl.decode_time(k + 1)
        return Prediction(
            speedup=speedup,
            k=k,
            acceptance=self.accepted[0] / self.drafted[0],
            verify_ratio=tk / t1 if t1 and tk and 1 in dict(self.decode_s) else None,
            evidence=round(self.drafted[0]),
            last_ab=self.last_ab,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "drafted": list(self.drafted),
            "accepted": list(self.accepted),
            "decode_s": {str(n): list(s) for n, s in self.decode_s},
            "draft_s": self.draft_s,
            "generations": self.generations,
            "last_ab": self.last_ab,
            "updated_at": self.updated_at,
            "calibrated": self.calibrated,
        }

    @classmethod
    def from_dict(cls, key: str, data: Any) -> PairProfile:
        """Raises ValueError / TypeError / KeyError on a malformed entry. A version-1 entry (one smoothed
        value per size) reads as a single sample per size."""
        drafted = tuple(float(x) for x in data["drafted"])
        accepted = tuple(float(x) for x in data["accepted"])
        in_range = all(0 <= a <= d for a, d in zip(accepted, drafted, strict=False))
        if len(drafted) != len(accepted) or not in_range:
            raise ValueError("acceptance counts out of range")
        decode_s = tuple(
            sorted(
                (int(n), tuple(float(x) for x in (s if isinstance(s, list) else [s])))
                for n, s in data["decode_s"].items()
            )
        )
        if any(n < 1 or not xs or not all(x > 0 and math.isfinite(x) for x in xs) for n, xs in decode_s):
            raise ValueError("decode timings out of range")
        draft_s = data.get("draft_s")
        last_ab = data.get("last_ab")
        return cls(
            key=key,
            label=str(data.get("label", key)),
            drafted=drafted,
            accepted=accepted,
            decode_s=decode_s,
            draft_s=float(draft_s) if draft_s is not None else None,
            generations=int(data.get("generations", 0)),
            last_ab=float(last_ab) if last_ab is not None else None,
            updated_at=float(data.get("updated_at", 0.0)),
            calibrated=bool(data.get("calibrated", False)),
        )


class ProfileStore:
    """The pair profiles of this machine. Not thread-safe: one thread (the app's inference worker) owns it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / FILE_NAME
        self._profiles: dict[str, PairProfile] | None = None

    def get(self, key: PairKey) -> PairProfile | None:
        return self._load().get(key.key)

    def learn(
        self,
        key: PairKey,
        stats: GenerationStats,
        decode_s: Mapping[int, Sequence[float]],
        draft_s: float | None,
    ) -> PairProfile:
        return self._put(self._get_or_new(key).learn(stats, decode_s, draft_s))

    def learn_from(
        self, key: PairKey, stats: GenerationStats, controller: DraftLengthController
    ) -> PairProfile:
        return self.learn(key, stats, controller.costs.samples(), controller.draft_cost)

    def record_ab(self, key: PairKey, speedup: float) -> PairProfile | None:
        """Keep a clean A/B's speedup (a disturbed one is never passed here)."""
        profile = self.get(key)
        return self._put(replace(profile, last_ab=speedup)) if profile is not None else None

    def prepare(self, key: PairKey, engine: Calibratable) -> PairProfile:
        """Seed a freshly loaded engine's cost curve from this machine's profile of the pair, calibrating
        first (a few seconds, once per pair and machine) when the profile has never been calibrated."""
        profile = self._get_or_new(key)
        if not profile.calibrated:
            profile = self._put(profile.seed(engine.calibrate()))
        else:
            engine.costs.seed(dict(profile.decode_s))
        return profile

    def _get_or_new(self, key: PairKey) -> PairProfile:
        return self.get(key) or PairProfile(key.key, key.label, (), (), (), None)

    def _put(self, profile: PairProfile) -> PairProfile:
        profiles = self._load()
        profiles[profile.key] = profile
        self._save(profiles)
        return profile

    def _load(self) -> dict[str, PairProfile]:
        if self._profiles is not None:
            return self._profiles
        self._profiles = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._profiles
        except OSError as exc:
            log.warning("cannot read %s: %s; starting with no pair profiles", self.path, exc)
            return self._profiles
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") not in READABLE_VERSIONS:
                raise ValueError(f"not a version {FILE_VERSION} pair-profile file")
            pairs = doc["pairs"]
            if not isinstance(pairs, dict):
                raise ValueError("'pairs' is not an object")
        except (ValueError, KeyError) as exc:
            self._set_aside(exc)
            return self._profiles
        for key, data in pairs.items():
            try:
                self._profiles[key] = PairProfile.from_dict(key, data)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning("%s: dropping the malformed profile of %s (%s)", self.path, key, exc)
        return self._profiles

    def _set_aside(self, why: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.warning("%s is unreadable (%s); moved to %s, starting again", self.path, why, aside.name)
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)

    def _save(self, profiles: Mapping[str, PairProfile]) -> None:
        doc = {"version": FILE_VERSION, "pairs": {k: p.to_dict() for k, p in profiles.items()}}
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a full or read-only disk costs the profile, never the reply
            log.warning("cannot write %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

"""`EncodingConfig`: every choice that changes which tokens a piece becomes.

A vocabulary, a prepared corpus and a checkpoint all carry this config as JSON, and refuse to
mix with data made under another one.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import JSONConfig, opt

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

# Fields added after version 1 and their values before (off): a config file without them (a corpus,
# tokenizer or checkpoint made before them) reads as made without them, and `to_dict` leaves them
# out at these values, so the hashes and caches of such files stay valid.
_ADDED = {"parts": False, "max_parts": 32, "velocity_bins": 0}

#: Bump when the token layout changes in a way that makes old token files undecodable.
ENCODING_VERSION = 1


@dataclass(frozen=True)
class EncodingConfig(JSONConfig):
    """How a `Score` becomes tokens. Each field says what it does in its help text.

    ``max_duration``: gaps longer than it are written as several ``<sep> dN`` pairs.
    ``max_silence`` keeps one absurd delta time from flooding a corpus with separator tokens.
    Tempo tokens are geometric bins around 120 qpm, ``2**(1/tempo_bins_per_octave)`` apart.
    """

    steps_per_beat: int = opt(4, "grid resolution: steps per quarter note (4: sixteenth notes)")
    max_duration: int = opt(64, "longest note in steps; longer notes are clipped (and counted)")
    min_pitch: int = opt(0, "lowest pitch kept; notes below are dropped (and counted)")
    max_pitch: int = opt(127, "highest pitch kept; notes above are dropped (and counted)")
    instruments: bool = opt(True, "instrument tokens (program or drums) for each note's instrument")
    tempo: bool = opt(True, "tempo tokens (the initial tempo and each change)")
    max_silence: int | None = opt(256, "silences longer than this many steps are shortened to it "
                                       "(None: keep every silence; at least max_duration)")
    tempo_bins_per_octave: int = opt(12, "tempo tokens per doubling of the tempo (geometric bins around 120 qpm)")
    min_tempo: float = opt(30.0, "slowest tempo token (qpm)")
    max_tempo: float = opt(300.0, "fastest tempo token (qpm)")
    velocity: int = opt(90, "velocity of every decoded note when velocity_bins is 0 (the tokens carry none)")
    # Parts and dynamics (on for new corpora; files made before them read as without them: _ADDED)
    parts: bool = opt(True, "part tokens p0.. keep tracks apart that share a program (each part's program "
                            "declared once, at its first note; needs instruments, off without them)")
    max_parts: int = opt(32, "most parts a piece keeps with parts on; further tracks join a part of their "
                             "instrument (counted)")
    velocity_bins: int = opt(16, "dynamics: velocity tokens v0.. in this many bins, written when a part's bin "
                                 "changes (0: none, every note decodes to `velocity`)")

    def __post_init__(self):
        super().__post_init__()
        if self.steps_per_beat < 1:
            raise ValueError(f"steps_per_beat must be >= 1, got {self.steps_per_beat}")
        if self.max_duration < 1:
            raise ValueError(f"max_duration must be >= 1, got {self.max_duration}")
        if not 0 <= self.min_pitch <= self.max_pitch <= 127:
            raise ValueError(f"pitch range must lie in 0..127, got {self.min_pitch}..{self.max_pitch}")
        if self.max_silence is not None and self.max_silence < 1:
            raise ValueError(f"max_silence must be >= 1 or None, got {self.max_silence}")
        if self.max_silence is not None and self.max_silence < self.max_duration:
            # A shorter cap could cut into notes still sounding across the gap.
            raise ValueError(
                f"max_silence ({self.max_silence}) must be >= max_duration ({self.max_duration})"
            )
        if not 0 < self.min_tempo < self.max_tempo:
            raise ValueError("need 0 < min_tempo < max_tempo")
        if self.parts and not self.instruments:  # (parts declare their programs: no instruments, no parts)
            object.__setattr__(self, "parts", False)
        if not 1 <= self.max_parts <= 128:
            raise ValueError(f"max_parts must lie in 1..128, got {self.max_parts}")
        if not 0 <= self.velocity_bins <= 128:
            raise ValueError(f"velocity_bins must lie in 0..128, got {self.velocity_bins}")

    @classmethod
    def blog(cls, **overrides) -> EncodingConfig:
        """The blog's scheme exactly: one instrument-free stream of notes, no tempo tokens.

        Drum notes have no pitch in this scheme, so they are dropped (and counted).
        """
        kw = dict(instruments=False, tempo=False, parts=False, velocity_bins=0)
        kw.update(overrides)
        return cls(**kw)

    # ------------------------------------------------------------- tempo bins
    def tempo_values(self) -> np.ndarray:
        """The qpm value of each tempo token, ascending; 120 qpm is always one of them."""
        return self._tempo_values

    @functools.cached_property
    def _tempo_values(self) -> np.ndarray:
        b = self.tempo_bins_per_octave
        lo = int(np.ceil(b * np.log2(self.min_tempo / 120.0) - 1e-9))
        hi = int(np.floor(b * np.log2(self.max_tempo / 120.0) + 1e-9))
        values = 120.0 * 2.0 ** (np.arange(lo, hi + 1) / b)
        values.flags.writeable = False
        return values

    def tempo_bin(self, qpm: ArrayLike) -> np.ndarray:
        """Index of the nearest tempo token (on a log scale) for each qpm value."""
        values = self._tempo_values
        q = np.clip(np.asarray(qpm, np.float64), values[0], values[-1])
        x = np.log2(q / values[0]) * self.tempo_bins_per_octave
        return np.rint(x).astype(np.int64)

    # ------------------------------------------------------------- velocity bins
    def velocity_bin(self, velocity: ArrayLike) -> np.ndarray:
        """The velocity token (bin) of each MIDI velocity: ``velocity_bins`` equal bins over 0..127."""
        v = np.clip(np.asarray(velocity, np.int64), 0, 127)
        return v * self.velocity_bins // 128

    def velocity_values(self) -> np.ndarray:
        """The velocity each bin decodes to: its centre (``velocity_bin`` of it is the bin again)."""
        b = np.arange(self.velocity_bins, dtype=np.int64)
        return (2 * b + 1) * 128 // (2 * self.velocity_bins)

    # ------------------------------------------------------------- serialise
    def to_dict(self) -> dict:
        """The fields as JSON; the newer options (parts, dynamics) only where they are on, so configs
        made before them (and their tokenizer hashes, corpus caches) stay exactly as they were."""
        d = asdict(self)
        for name, value in _ADDED.items():
            if d[name] == value and not self.parts:
                del d[name]
        return {"version": ENCODING_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> EncodingConfig:
        if "version" in d:  # a file written by `to_dict` (which always has the version) before parts and
            d = {**_ADDED, **d}  # dynamics existed lacks them: it was made without them
        else:
            d = dict(d)
        version = d.pop("version", ENCODING_VERSION)
        if version != ENCODING_VERSION:
            raise ValueError(
                f"encoding version {version} is not supported by this midigen "
                f"(it reads version {ENCODING_VERSION})"
            )
        return super().from_dict(d)

    def diff(self, other: EncodingConfig) -> dict:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = asdict(self), asdict(other)
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

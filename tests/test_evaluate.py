"""Music statistics on hand-made pieces with known values; likelihood metrics."""

import math

import numpy as np
import pytest

from midigen import Score
from midigen.metrics import compare, music_statistics, overlap_and_kl

Q = 480  # ticks per quarter = 4 steps


def scale():
    """C major scale C4..C5 in quarter notes: 8 notes, 8 beats, 2 bars of 4/4."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    return Score.from_notes(pitches, [i * Q for i in range(8)], [(i + 1) * Q for i in range(8)])


def test_scale_statistics():
    s = music_statistics(scale())
    assert s["pitch_range"] == 12
    assert s["pitch_classes_used"] == 7
    assert math.isclose(s["pitch_class_entropy"], 2.75)  # C twice, six others once
    assert s["polyphony"] == 1.0 and s["polyphony_rate"] == 0.0
    assert s["scale_consistency"] == 1.0
    assert s["note_density"] == 1.0 and s["empty_beat_rate"] == 0.0
    assert s["groove_consistency"] == 1.0  # both bars: an onset on every beat
    assert s["duration_hist"][3] == 8 and sum(s["duration_hist"]) == 8  # 8 notes of 4 steps
    assert s["ioi_hist"][3] == 7 and sum(s["ioi_hist"]) == 7


def test_chord_then_silence_statistics():
    # a C major triad for 4 beats, 4 silent beats, then one C# for 1 beat (outside C major)
    s = music_statistics(Score.from_notes([60, 64, 67, 61], [0, 0, 0, 8 * Q], [4 * Q] * 3 + [9 * Q]))
    assert s["pitch_range"] == 7
    # sounding steps before the last onset only: the triad's 16 (the C# starts the last onset)
    assert s["polyphony"] == 3.0 and s["polyphony_rate"] == 1.0
    assert math.isclose(s["scale_consistency"], 3 / 4)  # best scale holds 3 of the 4 notes
    assert math.isclose(s["empty_beat_rate"], 7 / 9)  # onsets in beats 0 and 8 of 9
    assert math.isclose(s["note_density"], 4 / 9)
    # bar 1: onset at step 0; bar 2: none; bar 3: onset at step 0 -> patterns differ twice in 16
    assert math.isclose(s["groove_consistency"], 1 - 2 / 32)
    assert s["ioi_hist"][31] == 1  # one interval of 32 steps


def test_voices_falling_silent_after_the_last_onset_are_not_unsteady():
    """Four voices in steady quarter notes for two bars, then a cut after two of them re-attack
    (a continuation that stops at a number of tokens): the tail where the other two have ended
    is not counted, so the texture reads as steady (sd 0); one missing beat in a voice is not."""
    pitches, starts, ends = [], [], []
    for beat in range(8):
        for p in (48, 55, 64, 72):
            pitches.append(p), starts.append(beat * Q), ends.append((beat + 1) * Q)
    for p in (48, 55):  # the last step, cut after two of its four notes
        pitches.append(p), starts.append(8 * Q), ends.append(9 * Q)
    s = music_statistics(Score.from_notes(pitches, starts, ends))
    assert s["polyphony"] == 4.0 and s["polyphony_sd"] == 0.0
    gap = [i for i in range(len(pitches)) if not (starts[i] == 3 * Q and pitches[i] == 72)]  # a beat's rest in one voice
    s = music_statistics(Score.from_notes([pitches[i] for i in gap], [starts[i] for i in gap], [ends[i] for i in gap]))
    assert s["polyphony_sd"] > 0.3


def test_drums_are_left_out_of_pitch_statistics():
    s = music_statistics(Score.from_notes([36, 60], [0, 0], [Q, Q], is_drum=[True, False]))
    assert s["pitch_range"] == 0 and s["pitch_classes_used"] == 1
    assert s["note_density"] == 2.0  # but the drum note is a note


def test_comparison_figures():
    a = [music_statistics(scale())] * 5
    c = compare(a, a)
    assert all(math.isclose(v["overlap"], 1.0) and abs(v["kl"]) < 1e-9 for k, v in c.items() if np.isfinite(v["overlap"]))
    oa, kl = overlap_and_kl([0, 0, 0, 1], [5, 6, 7, 8])
    assert oa < 1e-3 and kl > 1
    oa, _ = overlap_and_kl([1, 2, 3, 4], [1, 2, 3, 4])
    assert oa == pytest.approx(1.0)


def test_overlap_tells_samples_of_one_distribution_from_shifted_ones():
    """Kernel densities: two samples of the size an evaluation has (19 pieces, 32 continuations)
    of the same distribution overlap well; shifted by 1 or 3 standard deviations, ever less."""
    rng = np.random.default_rng(0)
    same, one, three = (np.mean([overlap_and_kl(rng.normal(size=19), rng.normal(shift, size=32))[0]
                                 for _ in range(50)]) for shift in (0, 1, 3))
    assert same > 0.75 and 0.5 < one < same - 0.1 and three < 0.25, (same, one, three)


def test_metrics_sit_below_train_and_the_evaluate_command():
    """train imports the metrics, so the metrics must not import train (or anything above it)."""
    import subprocess
    import sys

    code = ("import sys, midigen.metrics; "
            "print(sorted(m for m in sys.modules if m in ('midigen.train', 'midigen.generate', 'midigen.evaluate', "
            "'midigen.cli', 'midigen.checkpoint')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]"


def test_a_prompt_of_no_beats_is_refused():
    from midigen.evaluate import EvaluateConfig

    for beats in (0, -3.0):
        with pytest.raises(ValueError, match="prompt_beats must be > 0"):
            EvaluateConfig(prompt_beats=beats)

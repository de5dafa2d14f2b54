"""A synthetic corpus of realistic multi-track MIDI files, for benchmarks at Lakh scale.

``write_synthetic_corpus(out_dir, n_files, seed=0)`` writes ``n_files`` band-like MIDI files
with midigen's own writer (``midigen.Score.from_notes(...).to_file(path)``). Each file has:

* 1-8 instruments, programs drawn from common General MIDI ones (piano, guitars, basses,
  strings, brass, synths, ...); about half the files with 2+ instruments also have a drum
  track (``is_drum=True``, kick/snare/hi-hat patterns on a 16th grid);
* a length from 30 s to 6 min, log-uniform (median ~1.7 min, mean ~2.2 min);
* notes on a 16th or 8th grid (per instrument), with timing jitter in about half the files
  ("played in" rather than step-entered); instruments drop out for some bars;
* melodies (random walks), chords (3-4 notes: triads, sevenths, octaves), bass lines; note
  lengths from staccato to several beats; velocities with per-instrument level, accents on
  beats and noise;
* one tempo (60-180 qpm), with a tempo change in ~20% of the files; 4/4 or sometimes 3/4;
  480 ticks per quarter in most files, else 96, 192 or 384.

Everything for one file is vectorised with numpy (a handful of calls per instrument, none per
note). File ``i`` is ``{out_dir}/{i // 1000:03d}/synth_{i:06d}.mid`` and depends only on
``seed + i``, so the corpus is deterministic, a larger corpus extends a smaller one with the
same seed, and files that already exist are skipped (an interrupted run resumes). With seed 0,
5%-95% of the files hold 200-6.7k notes and weigh 1.6-49 KB (median 10 KB and 1.3k notes, mean
16 KB and 2.2k notes; real Lakh band arrangements are larger, ~30-55 KB and 3-7k notes). 2000
files take ~4 s to write on one core, 20000 ~45 s with 2 processes.

Run from the repository root::

    .venv/bin/python benchmarks/synthetic.py --out /tmp/midigen-bench/synth-2000 --files 2000 --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# Common General MIDI programs (0-based), grouped by the role they play in a band arrangement.
CHORD_PROGRAMS = [0, 1, 2, 4, 5, 16, 17, 19, 24, 25, 26, 27, 48, 49, 50, 52, 61, 88, 89, 90]
MELODY_PROGRAMS = [0, 11, 24, 26, 29, 30, 40, 41, 56, 57, 60, 64, 65, 66, 68, 71, 73, 80, 81]
BASS_PROGRAMS = [32, 33, 34, 35, 36, 37, 38, 39]
DRUM_KIT = dict(kick=36, snare=38, closed_hat=42, open_hat=46, crash=49, ride=51, tom=45)
CHORD_SHAPES = np.array([[0, 4, 7, -1], [0, 3, 7, -1], [0, 4, 7, 11], [0, 3, 7, 10], [0, 4, 7, 10],
                         [0, 7, 12, -1], [0, 5, 7, -1], [-12, 0, 4, 7]])
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def path_of(out_dir, i: int) -> Path:
    return Path(out_dir) / f"{i // 1000:03d}" / f"synth_{i:06d}.mid"


def _durations(rng, n, grid, choices, probs):
    return (rng.choice(choices, size=n, p=probs) * grid).astype(np.int64)


def _onsets(rng, n_slots, slots_per_beat, beats_per_bar, density, active_bar):
    """Slot indices of note onsets: Bernoulli per slot, denser on beats, only in active bars."""
    slot = np.arange(n_slots)
    on_beat = slot % slots_per_beat == 0
    downbeat = slot % (slots_per_beat * beats_per_bar) == 0
    p = np.where(downbeat, min(1.0, 2.5 * density), np.where(on_beat, min(1.0, 1.6 * density), 0.6 * density))
    keep = (rng.random(n_slots) < p) & active_bar[slot // (slots_per_beat * beats_per_bar)]
    return slot[keep]


def synthetic_score(seed: int):
    """One synthetic piece as a `midigen.Score` (deterministic given ``seed``)."""
    from midigen import Score

    rng = np.random.default_rng(seed)
    tpq = int(rng.choice([480, 96, 192, 384], p=[0.7, 0.1, 0.1, 0.1]))
    qpm = float(np.round(rng.uniform(60, 180), 1))
    seconds = float(np.exp(rng.uniform(np.log(30), np.log(360))))
    beats_per_bar = 3 if rng.random() < 0.15 else 4
    n_bars = max(2, int(seconds * qpm / 60 / beats_per_bar))
    n_beats = n_bars * beats_per_bar
    n_inst = int(rng.integers(1, 9))
    drums = n_inst >= 2 and rng.random() < 0.5
    human = rng.random() < 0.5  # timing jitter and velocity spread of a played-in file
    key = int(rng.integers(0, 12))

    # Roles: drums (maybe), a bass when there are 3+ instruments, then chords and melodies.
    roles = (["drums"] if drums else []) + (["bass"] if n_inst - drums >= 2 else [])
    roles += list(rng.choice(["chords", "melody"], size=n_inst - len(roles), p=[0.5, 0.5]))
    used: set[int] = set()
    parts = []  # (pitch, start, end, velocity, program, is_drum) per instrument
    for role in roles:
        active_bar = rng.random(n_bars) >= rng.uniform(0.0, 0.35)  # sections where it rests
        level = rng.uniform(55, 110)
        if role == "drums":
            spb = 4
            n_slots = n_beats * spb
            slot = np.arange(n_slots)
            in_beat = slot % spb
            beat = (slot // spb) % beats_per_bar
            bar_on = active_bar[slot // (spb * beats_per_bar)]
            hat_every = int(rng.choice([1, 2]))  # 16th or 8th hi-hats
            masks = {
                "kick": (in_beat == 0) & ((beat % 2 == 0) | (rng.random(n_slots) < 0.3))
                | ((in_beat == 2) & (rng.random(n_slots) < 0.15)),
                "snare": ((in_beat == 0) & (beat % 2 == 1)) | (rng.random(n_slots) < 0.03),
                "closed_hat": (in_beat % hat_every == 0) & (rng.random(n_slots) < 0.9),
                "open_hat": (in_beat == 2) & (rng.random(n_slots) < 0.08),
                "crash": (slot % (spb * beats_per_bar * 8) == 0),
                "tom": (rng.random(n_slots) < 0.01),
            }
            names = list(masks)
            hit = np.stack([masks[k] & bar_on for k in names])  # (drum, slot)
            d_idx, s_idx = np.nonzero(hit)
            pitch = np.array([DRUM_KIT[k] for k in names])[d_idx]
            start = s_idx * (tpq // spb)
            dur = np.full(len(start), max(1, tpq // 8))
            vel = level + np.where(s_idx % spb == 0, 15, -5) + rng.normal(0, 8, len(start))
            program, is_drum = 0, True
        else:
            spb = int(rng.choice([4, 2], p=[0.6, 0.4]))  # 16th or 8th grid
            n_slots = n_beats * spb
            grid = tpq // spb
            pool = {"bass": BASS_PROGRAMS, "chords": CHORD_PROGRAMS, "melody": MELODY_PROGRAMS}[role]
            free = [p for p in pool if p not in used] or pool
            program = int(rng.choice(free))
            used.add(program)
            is_drum = False
            if role == "bass":
                on = _onsets(rng, n_slots, spb, beats_per_bar, rng.uniform(0.3, 0.7), active_bar)
                degree = np.cumsum(rng.integers(-2, 3, len(on)))
                pitch = 36 + key + MAJOR[degree % 7] + 12 * np.clip(degree // 7, -1, 1)
                dur = _durations(rng, len(on), grid, [1, 2, 3, 4, 8], [0.2, 0.35, 0.1, 0.25, 0.1])
                start_slots, n_per = on, 1
            elif role == "melody":
                on = _onsets(rng, n_slots, spb, beats_per_bar, rng.uniform(0.25, 0.8), active_bar)
                degree = np.clip(np.cumsum(rng.integers(-3, 4, len(on))), -10, 14)
                octave = int(rng.choice([60, 72]))
                pitch = octave + key + MAJOR[degree % 7] + 12 * (degree // 7)
                dur = _durations(rng, len(on), grid, [1, 2, 3, 4, 6, 8, 16],
                                 [0.15, 0.3, 0.1, 0.2, 0.1, 0.1, 0.05])
                start_slots, n_per = on, 1
            else:  # chords: 3-4 notes per onset, sustained or comped
                on = _onsets(rng, n_slots, spb, beats_per_bar, rng.uniform(0.1, 0.4), active_bar)
                root = key + MAJOR[rng.integers(0, 7, len(on))] + int(rng.choice([48, 55, 60]))
                shape = CHORD_SHAPES[rng.integers(0, len(CHORD_SHAPES), len(on))]  # (onsets, 4)
                notes = root[:, None] + shape
                valid = shape != -1  # -1 marks "no 4th note"
                n_per = valid.sum(1)
                pitch = notes[valid]
                start_slots = on
                d = _durations(rng, len(on), grid, [1, 2, 4, 8, 16], [0.15, 0.25, 0.3, 0.2, 0.1])
                dur = np.repeat(d, n_per)
            start = np.repeat(start_slots, n_per) * grid
            accent = np.where(np.repeat(start_slots, n_per) % spb == 0, 8, 0)
            vel = level + accent + rng.normal(0, 6, len(start))
        if len(start) == 0:
            continue
        if human:  # played-in timing: onsets and lengths off the grid by a few ticks
            start = start + np.rint(rng.normal(0, tpq / 40, len(start))).astype(np.int64)
            dur = dur + np.rint(rng.normal(0, tpq / 30, len(start))).astype(np.int64)
            vel = vel + rng.normal(0, 6, len(start))
        start = np.maximum(start, 0)
        dur = np.maximum(dur, max(1, tpq // 32))
        n = len(start)
        parts.append((pitch, start, start + dur, vel, np.full(n, program), np.full(n, is_drum)))
    if not parts:  # (cannot really happen: every instrument has bars and onsets)
        parts.append((np.array([60]), np.array([0]), np.array([tpq]), np.array([90.0]), np.array([0]),
                      np.array([False])))
    pitch, start, end, vel, program, is_drum = (np.concatenate(x) for x in zip(*parts))
    tempos = [(0, qpm)]
    if rng.random() < 0.2:  # a tempo change at some bar
        at = int(rng.integers(1, max(2, n_bars))) * beats_per_bar * tpq
        tempos.append((at, float(np.round(qpm * rng.uniform(0.7, 1.4), 1))))
    return Score.from_notes(
        np.clip(pitch, 0, 127), start, end,
        program=program, is_drum=is_drum, velocity=np.clip(np.rint(vel), 1, 127),
        ticks_per_quarter=tpq, tempos=tempos, time_signatures=[(0, beats_per_bar, 4)],
    )


def _write_range(args) -> tuple[int, int, int]:
    out_dir, lo, hi, seed = args
    written = skipped = notes = 0
    for i in range(lo, hi):
        p = path_of(out_dir, i)
        if p.exists():
            skipped += 1
            continue
        score = synthetic_score(seed + i)
        score.to_file(p)  # (atomic: a temp file renamed into place)
        written += 1
        notes += score.n_notes
    return written, skipped, notes


def write_synthetic_corpus(out_dir, n_files: int, seed: int = 0, workers: int = 1,
                           progress: bool = False) -> dict:
    """Write files ``0 .. n_files-1`` under ``out_dir`` (file ``i`` from seed ``seed + i``).

    Files that already exist are skipped. ``workers`` > 1 writes in that many processes (the
    files are the same). Returns ``{"written", "skipped", "notes", "seconds"}`` (``notes``
    counts the notes written in this call).
    """
    t0 = time.monotonic()
    chunks = [(str(out_dir), lo, min(lo + 500, n_files), seed) for lo in range(0, n_files, 500)]
    total = [0, 0, 0]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.imap_unordered(_write_range, chunks)
            for k, r in enumerate(results, 1):
                total = [a + b for a, b in zip(total, r)]
                if progress and k % 4 == 0:
                    print(f"  {min(k * 500, n_files)}/{n_files} files ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    else:
        for k, c in enumerate(chunks, 1):
            total = [a + b for a, b in zip(total, _write_range(c))]
            if progress and k % 4 == 0:
                print(f"  {c[2]}/{n_files} files ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    written, skipped, notes = total
    return {"written": written, "skipped": skipped, "notes": notes, "seconds": time.monotonic() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (files go in subfolders of 1000)")
    ap.add_argument("--files", type=int, required=True, help="number of files")
    ap.add_argument("--seed", type=int, default=0, help="file i uses seed + i (default 0)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPU count)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    r = write_synthetic_corpus(args.out, args.files, args.seed, args.workers, progress=not args.quiet)
    rate = r["written"] / max(r["seconds"], 1e-9)
    print(f"{args.out}: {r['written']} written ({r['notes']:,} notes, {rate:,.0f} files/s), "
          f"{r['skipped']} already there, {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
    sys.exit(main())

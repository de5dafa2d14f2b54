"""Hand-built Standard MIDI File bytes, for tests of malformed input."""

from __future__ import annotations

import struct


def vlq(n: int) -> bytes:
    """Variable-length quantity, as in MIDI delta times."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events, end=True) -> bytes:
    """``events``: (delta, raw event bytes) pairs. Appends end-of-track unless ``end=False``."""
    body = b"".join(vlq(d) + e for d, e in events)
    if end:
        body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def header(ntracks: int, division: int = 480, fmt: int = 1) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, ntracks, division)


def smf(tracks, division: int = 480, fmt: int = 1, ntracks: int | None = None) -> bytes:
    return header(len(tracks) if ntracks is None else ntracks, division, fmt) + b"".join(tracks)


def note(pitch=60, delta=0, length=480, channel=0, velocity=90):
    """A note-on/note-off pair of events."""
    return [(delta, bytes([0x90 | channel, pitch, velocity])), (length, bytes([0x80 | channel, pitch, 0]))]


def tempo(qpm: float, delta=0):
    us = int(round(60_000_000 / qpm))
    return [(delta, b"\xff\x51\x03" + us.to_bytes(3, "big"))]


def simple_file(division=480) -> bytes:
    return smf([track(tempo(100) + note(60) + note(64) + note(67, length=960))], division)

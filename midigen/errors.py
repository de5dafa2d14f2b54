"""Errors that users see. Every message names the file and the problem."""

from __future__ import annotations

import os


class MidiError(ValueError):
    """A MIDI file could not be read, or holds nothing we can encode.

    ``path`` is the offending file (or ``None`` for in-memory data) and ``reason`` a short
    human-readable description of the problem; ``str(err)`` combines both.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        where = self.path if self.path is not None else "<in-memory MIDI>"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # so the error crosses process boundaries (multiprocessing) intact
        return (type(self), (self.path, self.reason))


class VocabError(ValueError):
    """A vocabulary file does not match the encoding configuration, or is malformed."""


class DecodeError(ValueError):
    """A token sequence breaks the encoding's grammar (raised by ``decode(..., strict=True)``)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or does not fit what loads it."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class PlaybackError(RuntimeError):
    """Audio could not be rendered: a missing library or a bad SoundFont."""


class RunFolderError(ValueError):
    """A run folder cannot be used as asked: it holds a run already (and neither ``--resume`` nor
    ``--overwrite`` was given), it holds nothing to resume, or it was made with other settings
    than those given again on resume."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT (Ctrl-C) or SIGTERM, after saving a checkpoint at a step boundary.

    ``str(err)`` says where the checkpoint is and the exact command that resumes; ``exit_code``
    is the shell's convention for the signal (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signal_name: str, step: int, exit_code: int):
        super().__init__(message)
        self.signal_name, self.step, self.exit_code = signal_name, step, exit_code

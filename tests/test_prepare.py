"""`midigen prepare`: parallel, resumable, deterministic corpora."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BACH, ROOT
from midigen.data import PreparedCorpus
from midigen.data.prepare import prepare
from midigen.data.splits import split_of

OUTPUTS = [f"{s}.{k}" for s in ("train", "valid", "test") for k in ("tokens.bin", "steps.bin", "index.npy", "pieces.json")]
OUTPUTS += ["manifest.json", "tokenizer.json"]


def outputs(d: Path) -> dict:
    return {name: (d / name).read_bytes() for name in OUTPUTS}


@pytest.fixture
def small_src(tmp_path, bach_files):
    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:40]:
        shutil.copy(f, src / f.name)
    return src


def test_prepare_writes_memmap_corpus_and_manifest(tmp_path, small_src):
    (small_src / "broken.mid").write_bytes(b"MThd garbage")
    (small_src / "empty.mid").write_bytes(b"")
    shutil.copy(small_src / "bwv1.6.mid", small_src / "copy_of_bwv1.6.mid")  # exact duplicate
    out = tmp_path / "out"
    r = prepare([small_src], out, workers=2, progress=False, valid_fraction=0.2, test_fraction=0.2)
    m = json.loads((out / "manifest.json").read_text())
    for key in ("encoding", "tokenizer", "files_ok", "files_failed", "failures", "duplicates", "splits", "sources"):
        assert key in m
    assert m["files_ok"] == 41 and m["files_failed"] == 2 and m["duplicates"] == 1
    assert [(d["path"].rsplit("/", 1)[-1], d["same_as"].rsplit("/", 1)[-1]) for d in m["duplicate_files"]] == [
        ("copy_of_bwv1.6.mid", "bwv1.6.mid")] or m["duplicate_files"][0]["path"].endswith("bwv1.6.mid")
    assert {f["path"].rsplit("/", 1)[-1] for f in m["failures"]} == {"broken.mid", "empty.mid"}
    assert all(f["error"] for f in m["failures"])
    assert sum(s["files"] for s in m["splits"].values()) == 40
    assert len(m["sources"]) == 43 and all(len(h) == 32 for h in m["sources"].values() if h)
    assert r.encoded + r.cached == 43 and r.encoded >= 42  # the duplicate may hit the cache
    # the token files are memmap-able and hold the pieces exactly
    total = 0
    for split in ("train", "valid", "test"):
        c = PreparedCorpus(out, split)
        assert c.tokens.dtype == np.uint16 and isinstance(c.tokens, np.memmap)
        assert len(c) == m["splits"][split]["files"] and c.n_tokens == m["splits"][split]["tokens"]
        for i in range(len(c)):
            ids, steps = c.piece(i)
            assert ids[0] == 1 and ids[-1] == 2  # <sos> ... <eos>
            assert np.all(np.diff(steps) >= 0)
        total += len(c)
    assert total == 40
    # a piece decodes back to its source
    from midigen import decode
    from midigen.check import check_file

    c = PreparedCorpus(out, "train")
    path = json.loads((out / "train.pieces.json").read_text())[0]
    ids, _ = c.piece(0)
    again = __import__("midigen").encode(path, c.tokenizer).ids
    assert np.array_equal(np.asarray(ids), again)
    assert check_file(path, c.tokenizer).f1 == 1.0
    assert decode(np.asarray(ids), c.tokenizer).n_notes > 0


def test_rerun_is_incremental_and_split_is_stable(tmp_path, small_src, bach_files):
    out = tmp_path / "out"
    prepare([small_src], out, workers=1, progress=False)
    before = json.loads((out / "manifest.json").read_text())
    first = {s: json.loads((out / f"{s}.pieces.json").read_text()) for s in ("train", "valid", "test")}
    again = prepare([small_src], out, workers=1, progress=False)
    assert again.encoded == 0 and again.cached == 40
    for f in bach_files[40:80]:
        shutil.copy(f, small_src / f.name)
    more = prepare([small_src], out, workers=1, progress=False)
    assert more.encoded == 40 and more.cached == 40  # only the new files were encoded
    after = {s: json.loads((out / f"{s}.pieces.json").read_text()) for s in ("train", "valid", "test")}
    for s in first:  # every old piece stays in its split
        assert set(first[s]) <= set(after[s])
    assert before["sources"].items() <= json.loads((out / "manifest.json").read_text())["sources"].items()


def test_split_is_by_content_and_seeded():
    hashes = [f"{i:032x}" for i in range(2000)]
    splits = [split_of(h, 0, 0.1, 0.1) for h in hashes]
    assert 0.07 < splits.count("test") / 2000 < 0.13 and 0.07 < splits.count("valid") / 2000 < 0.13
    assert splits == [split_of(h, 0, 0.1, 0.1) for h in hashes]
    assert splits != [split_of(h, 1, 0.1, 0.1) for h in hashes]


def test_a_stalling_file_times_out_and_the_rest_is_encoded(tmp_path, small_src):
    fifo = tmp_path / "stall.mid"
    os.mkfifo(fifo)  # opening it blocks forever: a worker stuck on one file
    out = tmp_path / "out"
    r = prepare([small_src, fifo], out, workers=2, timeout=3, progress=False)
    m = r.manifest
    assert m["files_ok"] == 40
    assert m["failures"] == [{"path": str(fifo), "error": "timed out after 3 s"}]
    assert r.worker_restarts == 1


def test_resume_after_sigkill_is_byte_identical(tmp_path, bach_files):
    src = tmp_path / "src"
    for k in range(5):  # 5 copies of the chorales: ~2000 files, four fifths duplicates (time to kill it)
        shutil.copytree(BACH, src / f"copy{k}")
    (src / "bad.mid").write_bytes(b"not midi")
    ref, out = tmp_path / "ref", tmp_path / "out"
    cmd = [sys.executable, "-m", "midigen", "prepare", "src", "--workers", "2", "-q"]
    subprocess.run(cmd + ["--out", str(ref)], cwd=tmp_path, check=True, capture_output=True, timeout=600)

    errors = tmp_path / "killed.stderr"
    with open(errors, "wb") as err:  # (a file, not a pipe: the orphaned workers may still write)
        proc = subprocess.Popen(cmd + ["--out", str(out)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once some (not all) files are in the cache
        journal = list((out / "cache").glob("*/journal.tsv")) if (out / "cache").exists() else []
        if (journal and journal[0].read_bytes().count(b"\n") >= 100) or proc.poll() is not None:
            break
        time.sleep(0.01)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "prepare finished before it could be killed"
    assert not (out / "manifest.json").exists()
    if Path("/proc/self/stat").exists():  # its workers notice, and exit quietly
        assert workers, "no worker process was seen"
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = [p for p in workers if _alive(p)]
        for p in orphans:  # (so that a failure leaves nothing running)
            os.kill(p, signal.SIGKILL)
        assert not orphans, "worker processes outlived their killed parent"
        assert b"Traceback" not in errors.read_bytes(), errors.read_text()

    subprocess.run(cmd + ["--out", str(out)], cwd=tmp_path, check=True, capture_output=True, timeout=600)
    assert outputs(out) == outputs(ref)
    m = json.loads((out / "manifest.json").read_text())
    assert m["duplicates"] == 4 * len(bach_files) and m["files_failed"] == 1


def _children(pid: int) -> list[int]:
    """Pids of the live child processes of ``pid`` (Linux /proc; [] elsewhere)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_other_encoding_into_same_folder_fails_clearly(tmp_path, small_src):
    from midigen import EncodingConfig, VocabError

    out = tmp_path / "out"
    prepare([small_src], out, workers=0, progress=False)
    with pytest.raises(VocabError, match="prepared differently"):
        prepare([small_src], out, EncodingConfig.blog(), workers=0, progress=False)


def test_cli_prepare_bach_and_shared_corpus(tmp_path, shared_corpus):
    out = tmp_path / "prepared"
    r = subprocess.run([sys.executable, "-m", "midigen", "prepare", str(BACH), str(shared_corpus), "--out", str(out), "-q",
                        "--start-method", "spawn"],  # (the SIGKILL test runs the default: forked workers)
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    failed = {f["path"].rsplit("/", 1)[-1]: f["error"] for f in m["failures"]}
    assert set(failed) == {"empty.mid", "ValueError_Control168.mid"}
    assert "no notes" in failed["empty.mid"] and "corrupt" in failed["ValueError_Control168.mid"]
    assert "failures:" in r.stdout and "empty.mid: no notes" in r.stdout


def test_a_damaged_cache_is_repaired_not_trusted(tmp_path, small_src):
    """A torn journal line (kill -9 mid-append) is cut off; entries whose shard bytes are gone are
    encoded again; the output stays byte-identical."""
    out = tmp_path / "out"
    prepare([small_src], out, workers=0, progress=False)
    ref = outputs(out)
    (cache,) = (out / "cache").iterdir()
    journal = cache / "journal.tsv"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 40 and all(len(line.split(b"\t")) == 7 for line in lines)
    (shard,) = (cache / "shards").iterdir()
    os.truncate(shard, shard.stat().st_size // 2)  # the second half of the tokens is lost
    with open(journal, "ab") as f:
        f.write(lines[0][:20])  # a torn line
    r = prepare([small_src], out, workers=2, progress=False)
    assert 0 < r.encoded < 40 and r.encoded + r.cached == 40
    assert outputs(out) == ref
    assert journal.read_bytes().endswith(b"\n")
    again = prepare([small_src], out, workers=1, progress=False)
    assert again.encoded == 0 and outputs(out) == ref


def _worker_waiting_on_fifo():
    """Pid of a child process blocked opening a FIFO (Linux: /proc/<pid>/wchan), or None."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and (d / "wchan").read_text() == "wait_for_partner":
                return int(d.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")
def test_a_worker_that_dies_is_replaced_and_its_file_reported(tmp_path, small_src):
    import threading

    fifo = tmp_path / "crash.mid"
    os.mkfifo(fifo)
    killed = []

    def killer():  # a worker blocked on the FIFO dies as if the file had crashed it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pid = _worker_waiting_on_fifo()
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    r = prepare([small_src, fifo], tmp_path / "out", workers=2, timeout=120, progress=False)
    t.join()
    assert killed, "no worker was seen blocked on the FIFO"
    m = r.manifest
    assert m["files_ok"] == 40 and r.worker_restarts == 1
    assert [f["path"] for f in m["failures"]] == [str(fifo)]
    assert "worker process died" in m["failures"][0]["error"]


def test_worker_protocol_never_sends_an_empty_batch(tmp_path, bach_files, monkeypatch):
    """Results go back in batches; a batch flushed on time right at the end of a list must not
    be followed by an empty one (the parent may already be waiting for something else)."""
    import threading
    from multiprocessing import Pipe, RawArray

    from midigen.data import worker
    from midigen.encoding import EncodingConfig

    monkeypatch.setattr(worker, "SEND_EVERY", -1.0)  # flush after every file
    parent, child = Pipe()
    now = RawArray("d", 2)
    t = threading.Thread(target=worker.worker_main, args=(child, now, str(tmp_path / "shards"),
                                                          EncodingConfig().to_dict(), b""))
    t.start()
    files = [(i, str(f)) for i, f in enumerate(bach_files[:3])]
    parent.send(files)
    parent.send(None)
    t.join(timeout=60)
    messages = []
    while parent.poll():
        messages.append(parent.recv())
    assert messages[0] == "ready"
    batches = messages[1:]
    assert [len(b) for b in batches] == [1, 1, 1]
    assert [b[0].index for b in batches] == [0, 1, 2] and all(b[0].error is None for b in batches)
    assert int(now[0]) == 3 and now[1] == 0.0  # three files started; idle now


def test_fork_and_spawn_workers_give_identical_corpora(tmp_path, small_src):
    (small_src / "broken.mid").write_bytes(b"MThd garbage")
    forked = prepare([small_src], tmp_path / "fork", workers=2, progress=False, start_method="fork")
    spawned = prepare([small_src], tmp_path / "spawn", workers=2, progress=False, start_method="spawn")
    assert forked.encoded == spawned.encoded == 41
    a, b = outputs(tmp_path / "fork"), outputs(tmp_path / "spawn")
    a["manifest.json"] = a["manifest.json"].replace(str(tmp_path / "fork").encode(), b"OUT")
    b["manifest.json"] = b["manifest.json"].replace(str(tmp_path / "spawn").encode(), b"OUT")
    assert a == b
    with pytest.raises(ValueError, match="start_method"):
        prepare([small_src], tmp_path / "x", workers=1, progress=False, start_method="forkserver!")


def test_steps_are_uint16_unless_a_piece_is_too_long(tmp_path, bach_files):
    """Steps take 2 bytes a token while every piece is shorter than 65,536 steps; a 2.5-hour
    piece (72,000 steps at 120 bpm) makes them int32, and either way they read back as encoded."""
    from midigen import encode
    from smf import note, smf, tempo, track

    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:3]:
        shutil.copy(f, src / f.name)
    short = prepare([src], tmp_path / "short", workers=0, progress=False)
    assert short.manifest["steps_dtype"] == "uint16"
    assert PreparedCorpus(tmp_path / "short").steps.dtype == np.uint16
    beat = 480
    # a note every 32 beats (long silences are shortened by the encoder, so the piece must go on)
    events = tempo(120) + [e for k in range(563) for e in note(60 + k % 12, delta=0 if k == 0 else 31 * beat)]
    long_piece = smf([track(events)])
    (src / "long.mid").write_bytes(long_piece)
    r = prepare([src], tmp_path / "long", workers=1, progress=False, valid_fraction=0, test_fraction=0)
    assert r.manifest["steps_dtype"] == "int32" and r.manifest["files_ok"] == 4
    c = PreparedCorpus(tmp_path / "long")
    assert c.steps.dtype == np.int32 and c.steps.nbytes == 4 * c.n_tokens
    for i, path in enumerate(c.names):
        ids, steps = c.piece(i)
        want = encode(path, c.tokenizer)
        assert np.array_equal(ids, want.ids) and np.array_equal(steps, want.steps)
    assert int(c.piece(c.names.index(str(src / "long.mid")))[1][-1]) > 65_535


def test_busy_for_reads_the_shared_clock_once():
    """The worker resets its 'busy since' to 0 when a file is done; a parent that read it twice
    (test, then subtract) saw a file busy for `now - 0` seconds and timed it out."""
    from midigen.data.pool import Worker

    class Flips:  # what a worker finishing its file between two reads looks like to the parent
        def __init__(self):
            self.reads = 0

        def __getitem__(self, i):
            self.reads += 1
            return 100.0 if self.reads == 1 else 0.0

    w = object.__new__(Worker)
    w.now = Flips()
    assert w.busy_for(103.0) == 3.0
    w.now = [0.0, 0.0]
    assert w.busy_for(103.0) == 0.0


def test_a_script_without_main_guard_gets_a_clear_error(tmp_path, bach_files):
    """Spawned workers import the main module again; a script calling prepare() at top level
    makes every worker die while starting. No file is blamed, and prepare() stops with an error
    that names the fix instead of looping or reporting every file as failed."""
    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:4]:
        shutil.copy(f, src / f.name)
    script = tmp_path / "no_guard.py"
    script.write_text(f"from midigen.data.prepare import prepare\n"
                      f"prepare([{str(src)!r}], {str(tmp_path / 'out')!r}, workers=1, progress=False, start_method='spawn')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode != 0
    assert "RuntimeError: worker processes keep dying while they start" in r.stderr
    assert "__main__" in r.stderr.splitlines()[-1] and "workers=0" in r.stderr.splitlines()[-1]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_missing_source_is_an_error_not_a_corpus(tmp_path, small_src):
    """A typo in a folder name stops the run before anything is written, naming the path."""
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        prepare([small_src, missing], tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()
    r = subprocess.run([sys.executable, "-m", "midigen", "prepare", str(missing), "--out", str(tmp_path / "out"), "-q"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and str(missing) in r.stderr
    assert "Traceback" not in r.stderr

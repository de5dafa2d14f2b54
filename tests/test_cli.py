"""The `midigen` command line, end to end in subprocesses."""

import json
import shutil
import subprocess
import sys
from pathlib import Path


from conftest import BACH, ROOT


def midigen(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "midigen", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_console_script_installed():
    exe = Path(sys.executable).parent / "midigen"
    assert exe.exists() or shutil.which("midigen"), "the midigen console script is not installed"


def test_check_bach_and_shared_corpus(tmp_path, shared_corpus):
    out = tmp_path / "report.json"
    r = midigen("check", BACH, shared_corpus, "--json", out, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    for key in ("files", "ok", "failed", "note_f1_min", "note_f1_mean"):
        assert key in report
    assert report["files"] == report["ok"] + len(report["failed"])
    assert report["ok"] >= 430
    assert report["note_f1_min"] == 1.0 and report["note_f1_mean"] == 1.0
    for f in report["failed"]:
        assert f["path"] and f["error"]


def test_check_prints_table_and_reports_bad_files(tmp_path):
    shutil.copy(BACH / "bwv1.6.mid", tmp_path / "good.mid")
    (tmp_path / "bad.mid").write_bytes(b"garbage")
    r = midigen("check", tmp_path, "--blog")
    assert r.returncode == 0, r.stderr
    assert "good.mid" in r.stdout and "1.0000" in r.stdout
    assert "bad.mid" in r.stdout and "not a MIDI file" in r.stdout
    assert "2 files: 1 ok, 1 failed" in r.stdout


def test_check_with_no_files_fails(tmp_path):
    r = midigen("check", tmp_path, "-q")
    assert r.returncode == 2
    assert "no MIDI files" in r.stderr


def test_encode_prints_tokens():
    r = midigen("encode", BACH / "bwv1.6.mid", "--limit", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<sos> t")  # the tempo opens the piece
    assert "tokens" in r.stderr


def test_encode_bad_file_names_it(tmp_path):
    p = tmp_path / "x.mid"
    p.write_bytes(b"")
    r = midigen("encode", p)
    assert r.returncode == 1
    assert str(p) in r.stderr and "empty" in r.stderr


def test_export_corpus(tmp_path):
    r = midigen("export-corpus", "--composer", "bach", "--out", tmp_path / "bach", "--limit", "2", "--workers", "1")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "bach").glob("*.mid"))
    assert len(files) == 2
    r = midigen("check", tmp_path / "bach", "-q", "--json", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["note_f1_min"] == 1.0

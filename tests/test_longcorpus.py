"""The long-piece corpus: repeats expanded (or counted where music21 cannot), includes, a free rerun."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from midigen.longcorpus import (
    JOURNAL,
    length_table,
    lengths_summary,
    long_works,
    write_expanded,
)
from midigen.midi import read_midi


def _part(marks):
    """Four one-bar whole notes C D E F; ``marks``: (bar, side, direction) repeat barlines."""
    from music21 import bar, note, stream

    p = stream.Part()
    for i in range(4):
        m = stream.Measure(number=i + 1)
        m.append(note.Note(60 + 2 * i, type="whole"))
        p.append(m)
    ms = p.getElementsByClass(stream.Measure)
    for i, side, direction in marks:
        setattr(ms[i], side, bar.Repeat(direction=direction))
    return stream.Score([p])


def test_repeats_are_expanded_or_counted(tmp_path):
    # bars 2-3 between repeat signs: played twice
    info = write_expanded(_part([(1, "leftBarline", "start"), (2, "rightBarline", "end")]), tmp_path / "a.mid")
    assert info == {"repeats": "expanded"}
    assert list(read_midi(tmp_path / "a.mid").pitch) == [60, 62, 64, 62, 64, 66]
    # no marks: as written
    assert write_expanded(_part([]), tmp_path / "b.mid") == {"repeats": "none"}
    assert read_midi(tmp_path / "b.mid").n_notes == 4
    # a start sign that nothing closes: music21 cannot expand it; written as it stands, and said so
    info = write_expanded(_part([(1, "leftBarline", "start")]), tmp_path / "c.mid")
    assert info["repeats"] == "unexpanded" and "ExpanderException" in info["repeat_error"]
    assert list(read_midi(tmp_path / "c.mid").pitch) == [60, 62, 64, 66]


def test_the_selection_and_the_length_table():
    works = long_works(1500)
    assert len(works) > 100 and all(n >= 1500 for _, n in works)
    folders = {rel.split("/")[0] for rel, _ in works}
    assert {"beethoven", "haydn", "mozart", "palestrina", "monteverdi"} <= folders
    assert "essenFolksong" not in folders  # books of short tunes are not long works
    assert [rel for rel, _ in long_works(1000, ["monteverdi"])] == sorted(rel for rel, _ in long_works(1000, ["monteverdi"]))
    s = lengths_summary([100, 200, 300, 400, 1000])
    assert (s["count"], s["median"], s["max"], s["total"]) == (5, 300, 1000, 2000)
    assert np.isclose(s["p10"], 140) and np.isclose(s["p90"], 760)
    assert "median" in length_table({"all": s, "include": lengths_summary([])})


def midigen(*args):
    return subprocess.run([sys.executable, "-m", "midigen", *map(str, args)], capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.mark.slow
def test_export_long_twice_costs_nothing(tmp_path, bach_files):
    inc = tmp_path / "mine"
    inc.mkdir()
    for name in ("bwv1.6.mid", "bwv10.7.mid"):  # 80 and 88 beats long
        shutil.copy(next(f for f in bach_files if f.name == name), inc)
    (inc / "broken.mid").write_bytes(b"MThd")
    out = tmp_path / "long"
    args = ("export-corpus", "--set", "long", "--composer", "monteverdi", "--min-notes", "1000", "--limit", "1",
            "--include", inc, "--min-beats", "85", "--out", out, "--workers", "2")
    r = midigen(*args)
    assert r.returncode == 0, r.stderr
    assert "2 written, 0 cached, 1 failed, 1 files shorter than 85 beats" in r.stdout, r.stdout
    assert "tokens per piece" in r.stdout and "broken.mid" in r.stdout
    names = sorted(p.name for p in out.glob("*.mid"))
    assert names == ["mine_bwv10.7.mid", "monteverdi_madrigal.3.1.mid"]
    journal = json.loads((out / JOURNAL).read_text())
    work = journal["works"]["monteverdi_madrigal.3.1.mid"]
    assert work["status"] == "written" and work["repeats"] in ("expanded", "none") and work["tokens"] > 2000
    assert journal["works"]["mine_bwv1.6.mid"]["status"] == "short"
    assert journal["lengths"]["all"]["count"] == 2 and journal["lengths"]["music21"]["max"] == work["tokens"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mid")}
    # the second run writes nothing (and does not try the broken file again)
    r = midigen(*args)
    assert r.returncode == 0, r.stderr
    assert "0 written, 4 cached, 1 failed" in r.stdout, r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mid")} == mtimes
    # a source newer than its copy is copied again
    os.utime(inc / "bwv10.7.mid")
    r = midigen(*args)
    assert "1 written, 3 cached" in r.stdout, r.stdout
    r = midigen("export-corpus", "--include", inc, "--out", out)
    assert r.returncode == 2 and "--include works with --set long" in r.stderr

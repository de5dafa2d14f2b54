import os
import sys
from pathlib import Path

import pytest

from midigen.assets import asset_path

ROOT = Path(__file__).resolve().parents[1]
BACH = asset_path("bach")  # the bundled chorales (package data: midigen/assets/bach)
BUNDLED_MODEL = asset_path("bach-gpt")
SHARED_CORPUS = ROOT.parent / "shared" / "corpus"

sys.path.insert(0, str(Path(__file__).parent))  # tests/smf.py

# Keep numeric libraries from busy-waiting on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"{SHARED_CORPUS} is absent (real MIDI files from another project; not shipped)")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def bach_files() -> list[Path]:
    files = sorted(BACH.glob("*.mid"))
    assert len(files) > 300, "the bundled Bach dataset midigen/assets/bach is missing"
    return files

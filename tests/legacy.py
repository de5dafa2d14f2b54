"""Rewrite a prepared corpus or a checkpoint into the layout of midigen before `Tokenizer`.

That layout kept a ``vocab.json`` (format ``midigen.vocab``) and, for BPE, a ``tokenizer.json``
of format ``midigen.bpe`` (the base vocabulary plus Hugging Face's tokenizer JSON). The tests
write those files from a real new-layout folder, then check that everything still loads them.
"""

import hashlib
import json
from pathlib import Path

from midigen import Tokenizer
from midigen.encoding import bpe


def old_vocab_json(tok: Tokenizer) -> dict:
    return {"format": "midigen.vocab", "version": 1, "encoding": tok.config.to_dict(), "tokens": tok.table.tokens}


def old_bpe_json(tok: Tokenizer) -> dict:
    pieces = [tok.to_base([i]) for i in range(len(tok))]
    hf = bpe.build(pieces, tok.merges)
    return {"format": "midigen.bpe", "version": 1, "vocab": old_vocab_json(tok), "tokenizer": json.loads(hf.to_str())}


def to_old_layout(folder) -> Tokenizer:
    """Replace the folder's tokenizer.json by the old pair (and fix checksums.json / the manifest)."""
    folder = Path(folder)
    tok = Tokenizer.load(folder / "tokenizer.json")
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.json").write_text(json.dumps(old_vocab_json(tok), indent=1))
    if tok.has_merges:
        (folder / "tokenizer.json").write_text(json.dumps(old_bpe_json(tok)))
    sums = folder / "checksums.json"
    if sums.is_file():  # a checkpoint: list the old files instead
        d = {k: v for k, v in json.loads(sums.read_text()).items() if k != "tokenizer.json"}
        for name in ("vocab.json", "tokenizer.json"):
            if (folder / name).is_file():
                d[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        sums.write_text(json.dumps(d, indent=1))
    manifest = folder / "manifest.json"
    if manifest.is_file():  # a corpus: the old manifest named vocab.json
        m = json.loads(manifest.read_text())
        m.pop("tokenizer", None)
        m["vocab"] = {"file": "vocab.json", "size": tok.n_base}
        manifest.write_text(json.dumps(m, indent=1))
    return tok

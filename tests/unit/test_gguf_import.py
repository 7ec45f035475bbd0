"""Importing a GGUF file as is: the artifact must not share storage with the source (no hard link)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from converters.gguf import MODEL_FILE, import_file


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_in_place_edit_of_the_source_leaves_the_imported_artifact_alone(tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    out = tmp_path / "artifact"
    out.mkdir()
    info = import_file(source, out)
    imported = out / MODEL_FILE
    before = _sha256(imported)
    assert before == _sha256(source)
    with source.open("r+b") as fh:  # edited in place (same inode), as `dd conv=notrunc` would
        fh.seek(100)
        fh.write(b"tampered")
    assert _sha256(source) != before
    assert _sha256(imported) == before  # the artifact cached under the old content's key is unchanged
    assert os.stat(imported).st_ino != os.stat(source).st_ino
    assert info["import"] in ("copy", "reflink")


def test_a_source_edited_after_it_was_hashed_is_refused(tmp_path: Path) -> None:
    from tursi.core.refs import ModelRef

    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = ModelRef("model.gguf", "gguf", source, "chat", "model").digest()  # what tursid keyed the artifact on
    ok = tmp_path / "ok"
    ok.mkdir()
    import_file(source, ok, digest)  # unchanged: accepted, and our digest agrees with tursid's
    with source.open("r+b") as fh:  # edited between tursid's hash and the converter's copy
        fh.seek(10)
        fh.write(b"x")
    late = tmp_path / "late"
    late.mkdir()
    with pytest.raises(ValueError, match="changed while it was imported"):
        import_file(source, late, digest)

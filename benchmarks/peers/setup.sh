#!/usr/bin/env bash
# Recreates the peer environments of the drift benchmark (benchmarks/monitor_drift.py):
#   $PEERS_DIR/evidently  Evidently 0.7.23          (requirements-evidently.txt)
#   $PEERS_DIR/alibi      alibi-detect 0.13.0 with the PyTorch backend, torch 2.13.0 CPU build
#                         (requirements-alibi.txt)
# They live outside the repository and apart from polyfuse's .venv because their pins conflict
# with it (alibi-detect needs numpy<2, Evidently pandas<3). benchmarks/peers/drift_peer.py runs
# under each venv's python; benchmarks/peers/selfcheck.py checks both.
#   serving               Ray Serve 2.60 and LitServe 0.2.19 (requirements-serving.txt) for
#                         benchmarks/serve_load.py, installed into polyfuse's own venv ($VENV,
#                         default .venv): those peers run polyfuse's model through its library.
#                         The script stops if pip would change torch, fastapi, starlette or
#                         uvicorn there.
#   guard                 Presidio's image redactor (requirements-guard.txt) for
#                         benchmarks/guard_pii.py, into polyfuse's venv without its
#                         opencv-python requirement (polyfuse keeps opencv-python-headless);
#                         needs Debian tesseract-ocr.
#   $PEERS_DIR/video      decord 0.6.0 (requirements-video.txt) for benchmarks/video_decode.py,
#                         which runs benchmarks/peers/video_peer.py under this venv's python
# Idempotent: an existing venv is kept and pip only installs what is missing or differs.
# torch goes in first and must resolve to the CPU build (+cpu, from the machine's local wheel
# folder): a plain torch requirement would otherwise pull the multi-GB CUDA build, so the script
# stops rather than let that happen.
# Usage: bash benchmarks/peers/setup.sh [evidently] [alibi] [serving] [guard] [video]
#   (no argument: evidently and alibi; PEERS_DIR defaults to /work/peers, VENV to .venv)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS_DIR="${PEERS_DIR:-/work/peers}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"

make_venv() {  # make_venv NAME: create $PEERS_DIR/NAME unless it exists
    local venv="$PEERS_DIR/$1"
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$PEERS_DIR"
        "$PYTHON" -m venv "$venv"
    fi
}

install_cpu_torch() {  # install_cpu_torch VENV: torch 2.13.0, CPU build only
    local pip="$1/bin/pip" version url
    version="$("$1/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)"
    if [[ "$version" == 2.13.0+cpu ]]; then
        return
    fi
    url="$("$pip" install --dry-run --quiet --ignore-installed --no-deps --report - "$TORCH_PIN" \
        2>/dev/null | "$1/bin/python" -c \
        'import json, sys; print(json.load(sys.stdin)["install"][0]["download_info"]["url"])' \
        || true)"
    if [[ "$url" != *%2Bcpu* && "$url" != *+cpu* ]]; then
        echo "setup.sh: $TORCH_PIN resolves to $url, not a CPU build: refusing to install it." >&2
        echo "  Put the torch-2.13.0+cpu wheel in pip's find-links and run again." >&2
        exit 1
    fi
    "$pip" install --quiet --no-deps "$TORCH_PIN" 2>&1 | { grep -v "is ignored" >&2 || true; }
}

setup_peer() {  # setup_peer NAME
    local venv="$PEERS_DIR/$1" start=$SECONDS
    make_venv "$1"
    if [ "$1" = alibi ]; then
        install_cpu_torch "$venv"
    fi
    if ! "$venv/bin/pip" install --quiet -r "$HERE/requirements-$1.txt" >"$venv/setup.log" 2>&1; then
        grep -v "is ignored" "$venv/setup.log" >&2  # the machine's pip config adds noise lines
        echo "setup.sh: pip install failed for $1 (log: $venv/setup.log)" >&2
        exit 1
    fi
    "$venv/bin/pip" check >/dev/null  # fails on a broken dependency set
    if "$venv/bin/python" -c "import torch" 2>/dev/null; then  # never a CUDA build
        "$venv/bin/python" -c "import sys, torch; sys.exit(not torch.__version__.endswith('+cpu'))"
    fi
    echo "$1: $venv ready ($((SECONDS - start)) s)"
}

setup_serving() {  # the serving peers, into polyfuse's venv, leaving its web and torch stack alone
    local venv="${VENV:-.venv}" start=$SECONDS changed
    if [ ! -x "$venv/bin/pip" ]; then
        echo "setup.sh: no venv at $venv (make install first, or set VENV)" >&2
        exit 1
    fi
    changed="$("$venv/bin/pip" install --dry-run --quiet --report - -r "$HERE/requirements-serving.txt" \
        2>/dev/null | "$venv/bin/python" -c '
import json, sys
guarded = {"torch", "fastapi", "starlette", "uvicorn"}
report = json.load(sys.stdin)
print(" ".join(i["metadata"]["name"] + "==" + i["metadata"]["version"]
               for i in report["install"] if i["metadata"]["name"].lower() in guarded))')"
    if [ -n "$changed" ]; then
        echo "setup.sh: the serving peers would change $changed in $venv: refusing." >&2
        echo "  Install them into a separate venv with polyfuse and run serving.py under it." >&2
        exit 1
    fi
    "$venv/bin/pip" install --quiet -r "$HERE/requirements-serving.txt"
    "$venv/bin/python" -c "import litserve, ray.serve"
    echo "serving: peers installed in $venv ($((SECONDS - start)) s)"
}

setup_guard() {  # Presidio's image redactor, into polyfuse's venv, keeping headless OpenCV
    local venv="${VENV:-.venv}" start=$SECONDS
    if [ ! -x "$venv/bin/pip" ]; then
        echo "setup.sh: no venv at $venv (make install first, or set VENV)" >&2
        exit 1
    fi
    command -v tesseract >/dev/null || echo "setup.sh: tesseract missing (apt-get install tesseract-ocr)" >&2
    grep -v '^presidio-image-redactor' "$HERE/requirements-guard.txt" >"$venv/guard-peer-deps.txt"
    "$venv/bin/pip" install --quiet -r "$venv/guard-peer-deps.txt"
    "$venv/bin/pip" install --quiet --no-deps "$(grep '^presidio-image-redactor' "$HERE/requirements-guard.txt")"
    "$venv/bin/python" -c "from presidio_image_redactor import ImageRedactorEngine"
    echo "guard: Presidio image redactor installed in $venv ($((SECONDS - start)) s)"
}

peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
    peers=(evidently alibi)
fi
for name in "${peers[@]}"; do
    case "$name" in
        evidently | alibi | video) setup_peer "$name" ;;
        serving) setup_serving ;;
        guard) setup_guard ;;
        *) echo "setup.sh: unknown peer '$name' (evidently, alibi, serving, guard, video)" >&2; exit 2 ;;
    esac
done

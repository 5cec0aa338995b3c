#!/usr/bin/env bash
# Release gate for a CI job: judge a candidate artifact, and register it only if it passes.
#
#   examples/release/release-gate.sh CANDIDATE GATE_DATA RULES [CHAMPION] [MODEL_NAME]
#
# CANDIDATE   the artifact folder `polyfuse train` wrote
# GATE_DATA   a labelled manifest the candidate never trained on
# RULES       the rules file (polyfuse schema gate; examples/av_digits/gates.yaml)
# CHAMPION    the model in production: a folder or models:/NAME@champion (optional)
# MODEL_NAME  register under this name when MLFLOW_TRACKING_URI is set (optional)
#
# Writes gate.json (the verdict) and card.md (the model card) into $OUT (default ./release)
# for the CI job to keep as build artifacts. Exit status: 0 the candidate may ship, 1 a rule
# failed (the job fails and names the rule), 2 the gate itself could not run.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    sed -n '4,11p' "$0" >&2
    exit 2
fi
candidate=$1 data=$2 rules=$3 champion=${4:-} name=${5:-}
out=${OUT:-release}
read -r -a polyfuse <<< "${POLYFUSE:-polyfuse}"  # a command, e.g. "python -m polyfuse"
mkdir -p "$out"

args=(gate "$candidate" --data "$data" --rules "$rules" --out "$out/gate.json")
[ -n "$champion" ] && args+=(--champion "$champion")
set +e
"${polyfuse[@]}" "${args[@]}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
    [ "$status" -eq 1 ] && echo "release gate: FAILED (verdict in $out/gate.json)" >&2
    exit "$status"
fi

# The card states what the gate measured on: rebuild it on the gate data, keep a copy.
"${polyfuse[@]}" card "$candidate" --data "$data" --source "release gate data" -q --out "$out/card.md"

if [ -n "$name" ] && [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
    "${polyfuse[@]}" register "$candidate" --name "$name" --alias challenger --gate "$out/gate.json"
fi
echo "release gate: PASSED"

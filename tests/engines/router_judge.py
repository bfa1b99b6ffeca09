"""Let the routers' own argument parsers judge a router argv parc emits. Runs inside
.venv-routers (tests/engines/setup.sh), never inside parc's: tests/test_disaggregation.py feeds a
JSON list of argvs on stdin and reads one JSON verdict per line.

Each router's launcher builds its RouterArgs with ``parse_router_args(argv)`` (argparse, then
RouterArgs.from_cli_args, which parses --prefill URL [BOOTSTRAP_PORT] pairs and the k=v
selectors), the same function its console entry calls before it starts the Rust router:

    vllm-router ...                                 -> vllm_router.launch_router.parse_router_args
    python3 -m sglang_router.launch_router ...      -> sglang_router.launch_router.parse_router_args

Nothing is started. A verdict is {"ok": true, "args": {...the RouterArgs fields parc sets...}}
or {"ok": false, "error": "..."} (argparse's message on an unknown flag or a bad value).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys

FIELDS = ("host", "port", "pd_disaggregation", "vllm_pd_disaggregation", "kv_connector", "prefill_urls",
          "decode_urls", "service_discovery", "prefill_selector", "decode_selector", "service_discovery_namespace",
          "service_discovery_port", "bootstrap_port_annotation")


def parse(argv: list[str]) -> dict:
    if argv[:1] == ["vllm-router"]:
        from vllm_router.launch_router import parse_router_args

        rest = argv[1:]
    elif argv[:3] == ["python3", "-m", "sglang_router.launch_router"]:
        from sglang_router.launch_router import parse_router_args

        rest = argv[3:]
    else:
        return {"ok": False, "error": f"not a router parc knows: {argv[:3]}"}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parse_router_args(rest)
    except SystemExit as exc:  # argparse: unknown flag or bad value
        return {"ok": False, "error": err.getvalue().strip().splitlines()[-1:] or [f"exit {exc.code}"]}
    except Exception as exc:  # noqa: BLE001 - RouterArgs validation; reported per case
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    values = dataclasses.asdict(args)
    return {"ok": True, "args": {k: values[k] for k in FIELDS if k in values}}


def main() -> int:
    for argv in json.load(sys.stdin):
        print(json.dumps(parse(argv), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

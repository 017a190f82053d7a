"""Serve a Hub stub folder: ``python -m tests.hubstub --root DIR [--host 127.0.0.1] [--port 0]``.

Prints the URL (one line, then flushes) and serves until interrupted; set ``HF_ENDPOINT`` to that URL.
``GET /_stub/requests`` returns the request counts per route.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from tests.hubstub import HubStub, bind


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hubstub", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding datasets/ORG/NAME/... repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    stub = HubStub(args.root)
    sock = bind(args.host, args.port)
    print(f"http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(stub.app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())

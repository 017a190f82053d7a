"""Serve a Hub stub folder: ``python -m tests.hubstub --root DIR [--host 127.0.0.1] [--port 0] [--token T]``.

Prints the URL (one line, then flushes) and serves until interrupted; set ``HF_ENDPOINT`` to that URL.
``GET /_stub/requests`` returns the request counts per route. Writes (create_repo, create_commit, upload_folder,
tags, branches) need a token the stub knows: ``--token`` adds one that may write, ``--read-only-token`` one whose
writes get 403; both repeat, and are kept in ROOT as ``HubStub.add_token`` keeps them (a later run knows them).
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
    parser.add_argument("--token", action="append", default=[], metavar="T", help="a token that may write (repeatable)")
    parser.add_argument(
        "--read-only-token",
        action="append",
        default=[],
        metavar="T",
        help="a valid token whose writes get 403 (repeatable)",
    )
    args = parser.parse_args(argv)
    if clash := set(args.token) & set(args.read_only_token):
        parser.error(f"token given both as --token and --read-only-token: {sorted(clash)[0]}")
    args.root.mkdir(parents=True, exist_ok=True)
    stub = HubStub(args.root, tokens=args.token, read_only_tokens=args.read_only_token)
    sock = bind(args.host, args.port)
    print(f"http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(stub.app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())

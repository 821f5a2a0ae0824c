"""``python -m trustmess.client``: send a message, or follow a conversation, from a terminal.

    TRUSTMESS_PASSWORD=… python -m trustmess.client --url http://127.0.0.1:8080 --user ada \\
        send 7 "Lunch at noon?"
    python -m trustmess.client --url http://127.0.0.1:8080 --user ada tail 7

The password never goes on the command line (where ``ps`` and shell history show it): it is
read from the environment variable ``--password-env`` names (default ``TRUSTMESS_PASSWORD``),
else asked for on the terminal. ``tail`` keeps following across reconnects and server
restarts, printing each message and change once, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from dataclasses import asdict

import aiohttp

from trustmess.client.client import Client
from trustmess.client.errors import TrustMessError
from trustmess.client.models import Change, Message

DEFAULT_PASSWORD_ENV = "TRUSTMESS_PASSWORD"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trustmess.client", description="A TrustMess client for the terminal."
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--user", required=True, help="username")
    parser.add_argument(
        "--password-env",
        default=DEFAULT_PASSWORD_ENV,
        metavar="VAR",
        help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV}); "
        "unset: asked for on the terminal",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log reconnects to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send one message and print its seq")
    send.add_argument("conversation", type=int, help="conversation id")
    send.add_argument("text", help="message text")
    send.add_argument("--reply-to", type=int, metavar="SEQ", help="seq of the message answered")
    tail = commands.add_parser("tail", help="print a conversation's messages as they come")
    tail.add_argument("conversation", type=int, help="conversation id")
    tail.add_argument(
        "--since", type=int, metavar="SEQ", help="start after this seq (default: from now on)"
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser.parse_args(argv)


def read_password(variable: str) -> str:
    password = os.environ.get(variable)
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit(f"error: set {variable} or run on a terminal to be asked for the password")
    return getpass.getpass("password: ")


def format_entry(entry: Message | Change, as_json: bool) -> str:
    if as_json:
        return json.dumps({"type": type(entry).__name__.lower(), **asdict(entry)})
    if isinstance(entry, Message):
        body = "(deleted)" if entry.deleted or entry.body is None else entry.body
        answer = f" (reply to #{entry.reply_to})" if entry.reply_to else ""
        return f"#{entry.seq} user {entry.sender_id}{answer}: {body}"
    detail = {"edit": f": {entry.body}", "react": f" {entry.emoji}", "unreact": f" {entry.emoji}"}
    return f"#{entry.seq} user {entry.user_id} {entry.kind} #{entry.target_seq}" + detail.get(
        entry.kind, ""
    )


async def run(args: argparse.Namespace, password: str) -> int:
    async with Client(args.url) as client:
        await client.login(args.user, password)
        if args.command == "send":
            sent = await client.send(args.conversation, args.text, reply_to=args.reply_to)
            print(f"sent #{sent.seq} (message {sent.id})", flush=True)
            return 0
        await client.join(args.conversation, since=args.since)
        async for event in client.events():
            if isinstance(event, Message | Change) and event.conversation_id == args.conversation:
                print(format_entry(event, args.json), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    password = read_password(args.password_env)
    try:
        return asyncio.run(run(args, password))
    except TrustMessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

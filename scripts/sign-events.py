#!/usr/bin/env python3
"""(Re)compute X-Twilio-Signature for the Twilio webhook test events.

For every events/*.json whose rawPath starts with /twilio/, the form body (base64 if
isBase64Encoded) is parsed and signed as Twilio signs a webhook:

    url  = BASE_URL + rawPath + ("?" + rawQueryString if rawQueryString else "")
    data = url + name1 + value1 + name2 + value2 ...   (names sorted; a name's values sorted)
    sig  = base64(HMAC-SHA1(auth_token, data))

and written to headers["x-twilio-signature"]; a content-length header, if present, is set to
the decoded body's length. Files are rewritten with a 2-space indent, ensure_ascii=False and
a trailing newline, only when something changed.

    scripts/sign-events.py            # fix every stale signature
    scripts/sign-events.py --check    # exit 1 if any is stale (CI)

Stdlib only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from urllib.parse import parse_qsl

DEFAULT_BASE_URL = "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com"
DEFAULT_AUTH_TOKEN = "local-auth-token-not-a-secret-00"
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def body_bytes(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    data = url
    for name in sorted(grouped):
        for value in sorted(grouped[name]):
            data += name + value
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def process(path: Path, base_url: str, auth_token: str, check: bool) -> bool:
    """Returns True when the file is (or, without --check, now is) up to date."""
    text = path.read_text(encoding="utf-8")
    event = json.loads(text)
    raw_path = event.get("rawPath") or ""
    if not raw_path.startswith("/twilio/"):
        return True
    raw_body = body_bytes(event)
    params = parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw_body))
    query = event.get("rawQueryString") or ""
    url = base_url + raw_path + ("?" + query if query else "")
    headers = event.setdefault("headers", {})

    stale = []
    sig = signature(auth_token, url, params)
    if headers.get("x-twilio-signature") != sig:
        stale.append("x-twilio-signature")
        headers["x-twilio-signature"] = sig
    if "content-length" in headers and headers["content-length"] != str(len(raw_body)):
        stale.append("content-length")
        headers["content-length"] = str(len(raw_body))

    if not stale:
        return True
    if check:
        print(f"{path}: stale {', '.join(stale)} (run scripts/sign-events.py)", file=sys.stderr)
        return False
    path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{path}: updated {', '.join(stale)}")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any signature is stale; change nothing")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"public base URL (default {DEFAULT_BASE_URL})")
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN, help="Twilio auth token (default: the local test token)")
    parser.add_argument("files", nargs="*", type=Path, help="event files (default: events/*.json)")
    args = parser.parse_args()

    files = args.files or sorted(EVENTS_DIR.glob("*.json"))
    ok = True
    for path in files:
        ok &= process(path, args.base_url.rstrip("/"), args.auth_token, args.check)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Calls Tsunagu's /v1 API with a SigV4-signed request, as its IAM authorizer requires.

    python3 scripts/sigv4.py METHOD URL [JSON-BODY]
    python3 scripts/sigv4.py POST https://abc123.execute-api.ap-northeast-1.amazonaws.com/v1/numbers \
        '{"phone_number":"050-3123-4567"}'

Credentials and region come from the usual AWS sources (environment, ~/.aws, a role); the
caller needs execute-api:Invoke on the API (README, "Deploying in Japan"). Needs botocore
(`pip install botocore`; the project's .venv has it). Prints the body, then the status.
"""
import json
import sys
import urllib.error
import urllib.request

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    method, url = argv[1].upper(), argv[2]
    body = argv[3].encode() if len(argv) == 4 else None
    headers = {"content-type": "application/json"} if body else {}
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        sys.exit("no AWS credentials found")
    region = session.get_config_variable("region") or "ap-northeast-1"
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    # The service name API Gateway checks signatures for.
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    prepared = request.prepare()
    outgoing = urllib.request.Request(
        prepared.url, data=prepared.body, headers=dict(prepared.headers), method=method
    )
    try:
        with urllib.request.urlopen(outgoing) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    print(text)
    print(status)
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

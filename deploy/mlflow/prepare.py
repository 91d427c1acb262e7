"""Init step of the MLflow pod: wait for its dependencies, then make sure the bucket exists.

Why: on a fresh `kubectl apply -k`, PostgreSQL and the object store start at the same
time as MLflow; without this, MLflow crash-loops until they are up, and its first
artifact upload fails because nothing created the bucket. Idempotent: an existing
bucket is left alone, so a restarted pod is harmless.

Credentials and endpoint come from the environment only (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL), as boto3 reads them; nothing is printed
but the endpoint and bucket name.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time


def wait_tcp(address: str, deadline: float) -> None:
    """Block until HOST:PORT accepts a TCP connection or the deadline passes."""
    host, _, port = address.rpartition(":")
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                print(f"prepare: {address} is reachable", flush=True)
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not reachable: {err}") from None
            print(f"prepare: waiting for {address} ({err})", flush=True)
            time.sleep(2)


def ensure_bucket(bucket: str, deadline: float) -> bool:
    """Create BUCKET unless it exists; True when created. Retries while the store starts."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            print(f"prepare: bucket {bucket} exists", flush=True)
            return False
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                client.create_bucket(Bucket=bucket)
                print(f"prepare: created bucket {bucket}", flush=True)
                return True
            failure: Exception = err
        except BotoCoreError as err:
            failure = err
        if time.monotonic() > deadline:
            raise TimeoutError(f"object store not ready: {failure}")
        print(f"prepare: waiting for the object store ({type(failure).__name__})", flush=True)
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait-tcp", action="append", default=[], metavar="HOST:PORT",
                        help="wait until this address accepts connections (repeatable)")
    parser.add_argument("--bucket", help="bucket to create when missing")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    try:
        for address in args.wait_tcp:
            wait_tcp(address, deadline)
        if args.bucket:
            print(f"prepare: endpoint {os.environ.get('AWS_ENDPOINT_URL', '(AWS default)')}",
                  flush=True)
            ensure_bucket(args.bucket, deadline)
    except TimeoutError as err:
        print(f"prepare: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks that an S3-compatible server refuses `PUT` with `If-None-Match: *` over an existing key.

Delta commits on S3 without DynamoDB are safe only because the commit file for version N is
written with that header: of two writers racing for version N exactly one wins. A server that
ignores the header would let both win and silently drop a commit, so the test setup refuses it.

usage: python check_conditional_put.py ENDPOINT_URL   (exit 0 when the server honours it)
"""

import sys
import uuid

import boto3
from botocore.exceptions import ClientError


def main() -> int:
    endpoint = sys.argv[1]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = "switchyard-setup-check"
    key = f"probe/{uuid.uuid4()}"
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    except ClientError as err:
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        if status in (409, 412):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            s3.delete_object(Bucket=bucket, Key=key)
            if body != b"first":
                print(f"conditional PUT refused but the object was overwritten: {body!r}", file=sys.stderr)
                return 1
            print(f"conditional PUT over an existing key refused with HTTP {status}")
            return 0
        raise
    print("conditional PUT over an existing key was accepted: the server ignores If-None-Match", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

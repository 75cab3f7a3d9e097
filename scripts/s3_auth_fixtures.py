"""Prepares the S3 server that checks credentials (a second moto, started by scripts/test): a
bucket, a user that may write it and one that may only read it, then switches IAM
authentication on, so every later request must be signed with one of those keys and is
authorized by its user's policy. Prints one `NAME=value` line per value the tests read.

usage: python s3_auth_fixtures.py S3_ENDPOINT
"""

import json
import sys
import urllib.request

import boto3

BUCKET = "switchyard-auth"


def user(iam, name: str, actions: list[str]) -> str:
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": actions,
                "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            }
        ],
    }
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-lake", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return f"{key['AccessKeyId']}:{key['SecretAccessKey']}"


def main() -> int:
    endpoint = sys.argv[1]
    common = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    boto3.client("s3", **common).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **common)
    writer = user(iam, "lake-writer", ["s3:*"])
    reader = user(iam, "lake-reader", ["s3:GetObject", "s3:ListBucket"])
    # From here on every request is authenticated and authorized (moto's IAM mode).
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request) as response:
        response.read()
    print(f"SWITCHYARD_TEST_S3_WRITER={writer}")
    print(f"SWITCHYARD_TEST_S3_READER={reader}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

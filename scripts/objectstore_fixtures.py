"""Creates the bucket and the container the object-store tests write under (each test under a
prefix of its own): `switchyard-test` on the S3 server and on Azurite.

usage: python objectstore_fixtures.py S3_ENDPOINT AZURITE_BLOB_ENDPOINT
"""

import sys

import boto3
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from botocore.exceptions import ClientError

# Azurite's well-known development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main() -> int:
    s3_endpoint, azurite_endpoint = sys.argv[1], sys.argv[2]
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        s3.create_bucket(Bucket="switchyard-test")
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={azurite_endpoint}/{AZURITE_ACCOUNT};"
    )
    try:
        BlobServiceClient.from_connection_string(conn).create_container("switchyard-test")
    except ResourceExistsError:
        pass
    print("bucket s3://switchyard-test and container az://switchyard-test ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())

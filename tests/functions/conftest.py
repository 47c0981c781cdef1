"""Fixtures for the Lambda handlers: moto's AWS (S3, SQS, Secrets Manager, SSM) and the
environment the template gives the functions, with a SQLite store on tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobtail.store.sqlite import SQLiteStore

from .lambdas import FakeContext

API_KEY = "jobtail-sample-key"  # the bearer key the sample events carry
STREAM_SECRET = "stream-token-hmac-key-for-tests"
BUCKET = "jobtail-test-blobs"
PREFIX = "jobtail/test"


@dataclass
class Aws:
    """moto's AWS as the template creates it: a bucket, the job queue, the secrets."""

    s3: Any
    sqs: Any
    queue_url: str

    def receive(self) -> list[dict[str, Any]]:
        """Every message waiting on the job queue (made visible again for the next reader)."""
        found = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return list(found.get("Messages", []))


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="jobtail-jobs")["QueueUrl"]
        boto3.client("secretsmanager").create_secret(
            Name=f"{PREFIX}/web/api-keys", SecretString=API_KEY
        )
        boto3.client("ssm").put_parameter(
            Name=f"/{PREFIX}/web/stream-secret", Value=STREAM_SECRET, Type="SecureString"
        )
        yield Aws(s3=s3, sqs=sqs, queue_url=queue_url)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def lambda_env(aws: Aws, tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """The functions' environment as template.yaml sets it, over moto and a SQLite store."""
    env = {
        "JOBTAIL_STORE": f"sqlite:///{store_path}",
        "JOBTAIL_DATA_DIR": str(tmp_path / "data"),
        "JOBTAIL_BLOBS": f"s3://{BUCKET}",
        "JOBTAIL_AUTH": "apikey",
        "JOBTAIL_API_KEYS_REF": f"secretsmanager:{PREFIX}/web/api-keys",
        "JOBTAIL_SECRET_REF": f"ssm:{PREFIX}/web/stream-secret",
        "JOBTAIL_DISPATCHER": "sqs",
        "JOBTAIL_QUEUE_URL": aws.queue_url,
        "JOBTAIL_STREAM_WINDOW": "1",
        "JOBTAIL_HEARTBEAT_INTERVAL": "0.05",
        "POWERTOOLS_SERVICE_NAME": "jobtail-test",
        "POWERTOOLS_METRICS_NAMESPACE": "jobtail",
        # resolved from the references at cold start; set empty here so monkeypatch unsets them
        "JOBTAIL_API_KEYS": "",
        "JOBTAIL_SECRET": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return aws


@pytest.fixture
def store(store_path: Path) -> Iterator[SQLiteStore]:
    """The store the functions share, opened by the test as another process would."""
    db = SQLiteStore(store_path)
    yield db
    db.close()

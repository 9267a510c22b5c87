"""DataStack: the environment's customer-managed KMS key and its buckets."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import compliance
from stacks.constructs.log_group import allow_log_groups
from stacks.constructs.removal import removal_policy
from stacks.constructs.secure_bucket import access_log_bucket, secure_bucket
from stacks.settings import EnvironmentSettings


class DataStack(Stack):
    """KMS key (rotation on) and the datasets, artifacts, reports and access-log buckets."""

    def __init__(self, scope: Construct, id: str, *, settings: EnvironmentSettings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)

        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/clinical-agent/{settings.name}",
            description=f"Clinical agent data key ({settings.name})",
            enable_key_rotation=True,
            removal_policy=removal_policy(settings.destroy),
            pending_window=Duration.days(30),
        )
        allow_log_groups(self.key)  # this environment's log groups are encrypted with it

        self.access_logs_bucket = access_log_bucket(
            self,
            "AccessLogs",
            retention_days=settings.data.access_log_retention_days,
            noncurrent_version_days=settings.data.noncurrent_version_days,
            destroy=settings.destroy,
        )

        def bucket(name: str) -> s3.Bucket:
            return secure_bucket(
                self,
                name,
                key=self.key,
                access_logs=self.access_logs_bucket,
                destroy=settings.destroy,
                noncurrent_version_days=settings.data.noncurrent_version_days,
            )

        self.datasets_bucket = bucket("Datasets")
        self.artifacts_bucket = bucket("Artifacts")
        self.reports_bucket = bucket("Reports")

        if settings.destroy:
            provider = self.node.find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
            compliance.acknowledge(provider, *compliance.AUTO_DELETE_PROVIDER)

        for name, value in {
            "KeyArn": self.key.key_arn,
            "DatasetsBucketName": self.datasets_bucket.bucket_name,
            "ArtifactsBucketName": self.artifacts_bucket.bucket_name,
            "ReportsBucketName": self.reports_bucket.bucket_name,
        }.items():
            CfnOutput(self, name, value=value)

"""DataStack: the environment's customer-managed KMS key and its buckets."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import compliance
from stacks.constructs.secure_bucket import secure_bucket
from stacks.settings import EnvironmentSettings


class DataStack(Stack):
    """KMS key (rotation on) and the datasets, artifacts, reports and access-log buckets."""

    def __init__(self, scope: Construct, id: str, *, settings: EnvironmentSettings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        removal = RemovalPolicy.DESTROY if settings.destroy else RemovalPolicy.RETAIN

        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/clinical-agent/{settings.name}",
            description=f"Clinical agent data key ({settings.name})",
            enable_key_rotation=True,
            removal_policy=removal,
            pending_window=Duration.days(30),
        )
        # CloudWatch Logs encrypts this environment's log groups with the key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{self.partition}:logs:{self.region}:{self.account}:*"}},
            )
        )

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery supports only SSE-S3
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(settings.data.access_log_retention_days),
                    noncurrent_version_expiration=Duration.days(settings.data.noncurrent_version_days),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=settings.destroy,
        )
        compliance.acknowledge(self.access_logs_bucket, *compliance.ACCESS_LOG_BUCKET)

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
            provider = self.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
            compliance.acknowledge(provider, *compliance.AUTO_DELETE_PROVIDER)

        for name, value in {
            "KeyArn": self.key.key_arn,
            "DatasetsBucketName": self.datasets_bucket.bucket_name,
            "ArtifactsBucketName": self.artifacts_bucket.bucket_name,
            "ReportsBucketName": self.reports_bucket.bucket_name,
        }.items():
            CfnOutput(self, name, value=value)

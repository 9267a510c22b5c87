"""DataStack: one KMS key per environment, encrypted/versioned/TLS-only/logged buckets, retention by environment."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import template

ENVS = ["dev", "staging", "prod"]


def key_id(t):
    (key,) = t.find_resources("AWS::KMS::Key").keys()
    return key


def data_buckets(t):
    return {k: v for k, v in t.find_resources("AWS::S3::Bucket").items() if not k.startswith("AccessLogs")}


@pytest.mark.parametrize("env", ENVS)
def test_customer_managed_key_rotates(stages, env):
    template(stages[env].data).has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


@pytest.mark.parametrize("env", ENVS)
def test_data_buckets_are_encrypted_with_the_environment_key(stages, env):
    t = template(stages[env].data)
    buckets = data_buckets(t)
    assert {k.rstrip("0123456789ABCDEF") for k in buckets} == {"Datasets", "Artifacts", "Reports"}
    for bucket in buckets.values():
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id(t), "Arn"]},
        }


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_is_versioned_private_and_expires_noncurrent_versions(stages, env):
    for bucket in template(stages[env].data).find_resources("AWS::S3::Bucket").values():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert any("NoncurrentVersionExpiration" in r for r in props["LifecycleConfiguration"]["Rules"])


@pytest.mark.parametrize("env", ENVS)
def test_data_buckets_log_to_the_access_log_bucket(stages, env):
    t = template(stages[env].data)
    (log_bucket,) = [k for k in t.find_resources("AWS::S3::Bucket") if k.startswith("AccessLogs")]
    for bucket in data_buckets(t).values():
        assert bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_bucket}


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_denies_non_tls_requests(stages, env):
    t = template(stages[env].data)
    policies = t.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(t.find_resources("AWS::S3::Bucket"))
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_protected_environments_retain_everything_and_never_auto_delete(stages, env):
    t = template(stages[env].data)
    for kind in ("AWS::S3::Bucket", "AWS::KMS::Key"):
        for resource in t.find_resources(kind).values():
            # RetainExceptOnCreate: kept on update and delete, removed only when the first create rolls back
            assert resource["DeletionPolicy"] == "RetainExceptOnCreate" and resource["UpdateReplacePolicy"] == "Retain"
    assert t.find_resources("Custom::S3AutoDeleteObjects") == {}


def test_dev_destroys_and_empties_its_buckets(stages):
    t = template(stages["dev"].data)
    for resource in t.find_resources("AWS::S3::Bucket").values():
        assert resource["DeletionPolicy"] == "Delete"
    assert len(t.find_resources("Custom::S3AutoDeleteObjects")) == len(t.find_resources("AWS::S3::Bucket"))


def test_log_groups_may_use_the_key(stages):
    template(stages["prod"].data).has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": Match.any_value()}},
                            }
                        )
                    ]
                )
            }
        },
    )

"""The removal policy of stateful resources: destroyed in dev, retained elsewhere, but never blocking a retry.

``RETAIN_ON_UPDATE_OR_DELETE`` is CloudFormation's ``DeletionPolicy: RetainExceptOnCreate``: the resource is
kept when it is replaced or its stack is deleted, and deleted when the stack's *first create* rolls back. With
plain ``Retain`` a failed first deploy leaves named resources (log groups whose names the services dictate, the
patient table) behind, and the retry fails on "already exists".
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy


def removal_policy(destroy: bool) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE

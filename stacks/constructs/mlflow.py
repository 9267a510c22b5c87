"""MLflow for one environment: the serverless MLflow App (default) or a managed tracking server.

Artifacts go to the artifacts bucket under their own prefix; the service role may use only that
prefix and the environment's key. ``arn`` is also the tracking URI (the sagemaker-mlflow plugin
takes the ARN); ``grant_use(grantable)`` lets a role log runs, metrics, models and traces: exactly the
IAM actions of the chosen kind, plus the artifact prefix, because the MLflow client writes artifacts
straight to the artifact store in S3.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.prefix_grants import grant_prefix
from stacks.facts import MLFLOW_APP_ACTIONS, MLFLOW_TRACKING_SERVER_ACTIONS


class Mlflow(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        kind: Literal["serverless", "tracking_server"],
        name: str,
        bucket: s3.IBucket,
        prefix: str,
        key: kms.IKey,
        tracking_server_size: str = "Small",
    ) -> None:
        super().__init__(scope, id)
        self.kind = kind
        prefix = prefix.strip("/")
        self.bucket, self.prefix, self.key = bucket, prefix, key
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"MLflow {name}: artifact store under s3://<artifacts>/{prefix}/ only",
        )
        grant_prefix(self.role, bucket, prefix, key=key, write=True)
        store = f"s3://{bucket.bucket_name}/{prefix}"
        self.resource: sagemaker.CfnMlflowApp | sagemaker.CfnMlflowTrackingServer
        if kind == "serverless":
            app = sagemaker.CfnMlflowApp(
                self,
                "App",
                name=name,
                artifact_store_uri=store,
                role_arn=self.role.role_arn,
                model_registration_mode="AutoModelRegistrationDisabled",  # the pipeline registers models
            )
            self.arn = app.attr_arn
            self.resource = app
        else:  # tracking_server (settings.MlflowSettings.kind allows only these two)
            server = sagemaker.CfnMlflowTrackingServer(
                self,
                "TrackingServer",
                tracking_server_name=name,
                artifact_store_uri=store,
                role_arn=self.role.role_arn,
                tracking_server_size=tracking_server_size,
                automatic_model_registration=False,
            )
            self.arn = server.attr_tracking_server_arn
            self.resource = server
        self.resource.node.add_dependency(self.role)  # the role's policy must exist before the service uses it
        self.tracking_uri = self.arn

    def grant_use(self, grantable: iam.IGrantable) -> iam.Grant:
        """Log and read experiments, runs, metrics, models and traces on this MLflow (its one ARN), and read/write
        its artifact prefix (+ key). An App authorizes ``sagemaker:CallMlflowAppApi`` on its ARN; a tracking server
        the ``sagemaker-mlflow:`` actions of a logging client (stacks/facts.py)."""
        grant_prefix(grantable, self.bucket, self.prefix, key=self.key, write=True)
        return iam.Grant.add_to_principal(
            grantee=grantable,
            actions=list(MLFLOW_APP_ACTIONS if self.kind == "serverless" else MLFLOW_TRACKING_SERVER_ACTIONS),
            resource_arns=[self.arn],
        )

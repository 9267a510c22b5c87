"""InferenceStack: the SGLang endpoint with inference components, their autoscaling, alarms and dashboard.

One endpoint per environment (managed instance scaling, least-outstanding-requests routing); one
base inference component per configured model (SGLang image + S3 weights), adapter components on
top of them, each base component autoscaled (to zero and back where ``min_copies`` is 0, woken by
its adapters' requests too). Pinned adapters (config/models.lock.json) serve from this environment's
own copy of their archive, made and checked by a ``Custom::AdapterCopy`` before the component.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import compliance
from stacks.constructs.adapter_component import AdapterCopies, adapter_component
from stacks.constructs.endpoint_role import endpoint_execution_role
from stacks.constructs.log_group import encrypted_log_group
from stacks.constructs.model_component import ModelComponent
from stacks.constructs.removal import removal_policy
from stacks.constructs.scale_to_zero import no_capacity_metric
from stacks.constructs.sglang_image import SglangImage
from stacks.network_stack import NetworkStack
from stacks.settings import ADAPTER_PREFIX, EnvironmentSettings

VARIANT = "AllTraffic"
INVOKE_ACTIONS = ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]


class InferenceStack(Stack):
    """For other stacks: ``endpoint_name``, ``endpoint_arn``, ``base_component_names`` (model → component),
    ``component_names``, ``component_arn(name)``, ``grant_invoke(grantable, components)``, ``alarm_topic``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        artifacts_bucket: s3.IBucket,
        network: NetworkStack | None,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        inf = settings.inference
        self.settings = settings
        self.endpoint_name = inf.endpoint_name
        self.endpoint_arn = self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=inf.endpoint_name.lower()
        )
        self.base_component_names = {m.name: m.name for m in inf.models}
        pins = settings.pinned_adapters
        # Every component on this endpoint: configured bases and adapters, and the pinned adapters.
        self.component_names = list(settings.components)

        def log_group(id: str, name: str):
            return encrypted_log_group(
                self, id, key=key, retention_days=settings.log_retention_days, destroy=settings.destroy, name=name
            )

        # SageMaker writes here; created up front so they are encrypted and expire.
        log_groups = [log_group("EndpointLogs", f"/aws/sagemaker/Endpoints/{inf.endpoint_name}")] + [
            log_group(f"{m.name}Logs", f"/aws/sagemaker/InferenceComponents/{m.name}") for m in inf.models
        ]

        subnet_ids = network.subnet_ids if network else []
        security_group_ids = [network.endpoint_sg.security_group_id] if network else []
        image = SglangImage(self, "Image")
        self.role = endpoint_execution_role(
            self,
            "ExecutionRole",
            bucket=artifacts_bucket,
            key=key,
            weights=[
                (
                    f"arn:{self.partition}:s3:::{m.weights_bucket(self.region, artifacts_bucket.bucket_name)}",
                    m.weights_prefix,
                )
                if m.accept_eula
                else (artifacts_bucket.bucket_arn, m.weights_prefix)
                for m in inf.models
            ],
            # The environment's own copies of the pinned archives (content-addressed), and the configured adapters.
            archive_patterns=([f"{ADAPTER_PREFIX}*.tar.gz"] if pins else []) + [a.artifact_key for a in inf.adapters],
            log_groups=log_groups,
        )
        if network is not None:
            network.grant_network_interfaces(self.role, network.endpoint_sg, "Endpoint")
        image_uri = image.bind(self.role)

        # Network isolation: the SGLang container reads its weights from /opt/ml/model (SageMaker downloads them
        # from S3 with the execution role) and calls nothing else, so it needs no outbound network at all.
        vpc_config = (
            sagemaker.CfnEndpointConfig.VpcConfigProperty(subnets=subnet_ids, security_group_ids=security_group_ids)
            if network
            else None
        )
        config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",  # no EndpointConfigName: every property is create-only, so a change must get a new name
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=inf.network_isolation,
            vpc_config=vpc_config,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,  # no ModelName: the models come with the inference components
                    instance_type=inf.instance_type,
                    initial_instance_count=inf.initial_instance_count,
                    inference_ami_version=inf.inference_ami_version,  # the driver the SGLang image's CUDA needs
                    managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                        status="ENABLED",
                        min_instance_count=inf.min_instance_count,
                        max_instance_count=inf.max_instance_count,
                    ),
                    routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                        routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                    ),
                )
            ],
        )
        config.node.add_dependency(self.role)  # the role's policies exist before SageMaker checks them
        compliance.acknowledge(config, *compliance.ENDPOINT_CONFIG)
        endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=inf.endpoint_name, endpoint_config_name=config.attr_endpoint_config_name
        )

        bases: dict[str, ModelComponent] = {}
        for m in inf.models:
            bases[m.name] = ModelComponent(
                self,
                f"Model-{m.name}",
                model=m,
                endpoint_name=endpoint.attr_endpoint_name,
                variant_name=VARIANT,
                image_uri=image_uri,
                weights_uri=m.weights_uri(self.region, artifacts_bucket.bucket_name),
                role_arn=self.role.role_arn,
                network_isolation=inf.network_isolation,
                startup_timeout_seconds=inf.startup_timeout_seconds,
                subnet_ids=subnet_ids,
                security_group_ids=security_group_ids,
                adapters=[c for c, base in settings.components.items() if base == m.name and c != m.name],
            )
            bases[m.name].model.node.add_dependency(self.role)
        for a in inf.adapters:
            adapter_component(
                self,
                f"Adapter-{a.name}",
                name=a.name,
                endpoint_name=endpoint.attr_endpoint_name,
                base=bases[a.base].component,
                artifact_url=artifacts_bucket.s3_url_for_object(a.artifact_key),
            )
        if pins:
            self._pinned_adapters(settings, artifacts_bucket, key, network, endpoint, bases)

        self.alarm_topic = self._alarm_topic(settings)
        self._alarms_and_dashboard(self.component_names, [b.scaling.no_capacity_alarm for b in bases.values()])

        CfnOutput(self, "EndpointName", value=inf.endpoint_name)
        CfnOutput(self, "BaseComponentNames", value=",".join(self.base_component_names.values()))
        CfnOutput(
            self, "AdapterComponentNames", value=",".join([a.name for a in inf.adapters] + [p.name for p in pins])
        )
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)

    def _pinned_adapters(
        self,
        settings: EnvironmentSettings,
        bucket: s3.IBucket,
        key: kms.IKey,
        network: NetworkStack | None,
        endpoint: sagemaker.CfnEndpoint,
        bases: dict[str, ModelComponent],
    ) -> None:
        """Each pinned adapter: this environment's checked copy of its archive, then its component (with lineage)."""
        pins = settings.pinned_adapters
        copies = AdapterCopies(
            self,
            "AdapterCopies",
            bucket=bucket,
            key=key,
            pins=pins,
            log_retention_days=settings.log_retention_days,
            destroy=settings.destroy,
            vpc=network.vpc if network else None,
            subnets=network.subnets if network else None,
            security_group=network.lambda_sg if network else None,
        )
        for pin in pins:
            adapter_component(
                self,
                f"Adapter-{pin.name}",
                name=pin.name,
                endpoint_name=endpoint.attr_endpoint_name,
                base=bases[pin.base].component,
                artifact_url=bucket.s3_url_for_object(pin.artifact_key),
                tags=pin.lineage_tags,  # what serves -> the registry version, the pipeline execution, the MLflow run
                after=[copies.copy(pin)],  # the copy exists and is the pinned archive
            )

    # --- for other stacks ---------------------------------------------------------------------

    def component_arn(self, name: str) -> str:
        """An inference component's ARN. It does not contain the endpoint: components are scoped by name."""
        return self.format_arn(service="sagemaker", resource="inference-component", resource_name=name.lower())

    def grant_invoke(self, grantable: iam.IGrantable, components: Iterable[str]) -> iam.Grant:
        """InvokeEndpoint(WithResponseStream) on this endpoint, through ``components`` only (names it declares)."""
        return iam.Grant.add_to_principal(
            grantee=grantable,
            actions=INVOKE_ACTIONS,
            resource_arns=[self.endpoint_arn, *map(self.component_arn, components)],
        )

    # --- monitoring ---------------------------------------------------------------------------

    def _alarm_topic(self, settings: EnvironmentSettings) -> sns.Topic:
        # Its own key: CloudWatch alarms may publish only to topics whose key policy lets CloudWatch use the key.
        key = kms.Key(
            self,
            "AlarmKey",
            description=f"Clinical agent inference alarms ({settings.name})",
            enable_key_rotation=True,
            removal_policy=removal_policy(settings.destroy),
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        return sns.Topic(
            self, "Alarms", master_key=key, enforce_ssl=True, display_name=f"Inference alarms ({settings.name})"
        )

    def _alarms_and_dashboard(self, components: list[str], no_capacity_alarms: list[cw.Alarm | None]) -> None:
        inf = self.settings.inference
        notify = cw_actions.SnsAction(self.alarm_topic)
        period = Duration.minutes(5)

        def metric(component: str, name: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"InferenceComponentName": component},
                statistic=statistic,
                period=period,
            )

        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{inf.endpoint_name}-{self.settings.name}")
        all_alarms = [a for a in no_capacity_alarms if a]
        for c in components:
            latency = metric(c, "ModelLatency", "p90")  # microseconds
            errors = {kind: metric(c, f"Invocation{kind}Errors", "Sum") for kind in ("4XX", "5XX")}
            alarms = [
                latency.create_alarm(
                    self,
                    f"{c}Latency",
                    threshold=inf.latency_alarm_ms * 1000,
                    evaluation_periods=3,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"{c}: p90 model latency above {inf.latency_alarm_ms} ms for 15 minutes",
                ),
                *(
                    m.create_alarm(
                        self,
                        f"{c}{kind}",
                        threshold=inf.error_alarm_count,
                        evaluation_periods=2,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                        alarm_description=(
                            f"{c}: at least {inf.error_alarm_count} {kind} responses per 5 minutes, twice in a row"
                        ),
                    )
                    for kind, m in errors.items()
                ),
            ]
            for alarm in alarms:
                alarm.add_alarm_action(notify)
            all_alarms += alarms
            dashboard.add_widgets(
                cw.GraphWidget(
                    title=f"{c}: invocations and errors",
                    width=8,
                    left=[metric(c, "Invocations", "Sum"), *errors.values()],
                ),
                cw.GraphWidget(title=f"{c}: model latency p90 (µs)", width=8, left=[latency]),
                cw.GraphWidget(
                    title=f"{c}: requests without capacity",
                    width=8,
                    left=[no_capacity_metric(c).with_(statistic="Sum", period=period)],
                ),
            )
        dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=all_alarms, width=24))

"""Autoscaling for one inference component: target tracking on invocations per copy, and back from zero.

Target tracking adds and removes copies between ``min_copies`` and ``max_copies`` (down to zero when
``min_copies`` is 0). At zero copies there is no per-copy metric to track, so a request that finds no
capacity fails with ``NoCapacityInvocationFailures``: an alarm on that metric drives a step policy that
adds one copy (managed instance scaling then brings an instance back if the endpoint had none).

The metric's dimension is ``InferenceComponentName``. A request for an adapter component names the adapter, and
AWS documents no rule for which name the metric carries when the adapter's base has no copy
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html describes base components
only). So a base with adapters is woken by a metric-math alarm over the metric of the base *and* of each of its
adapters: whichever name SageMaker reports, the base's step policy adds a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, CfnResource, Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from constructs import Construct

DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
# Application Auto Scaling's service-linked role for SageMaker (created by AWS on first use).
SERVICE_LINKED_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


def no_capacity_metric(component_name: str) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/SageMaker",
        metric_name="NoCapacityInvocationFailures",
        dimensions_map={"InferenceComponentName": component_name},
        statistic="Maximum",
        period=Duration.minutes(1),
    )


def no_capacity(component_name: str, adapters: Sequence[str]) -> cw.IMetric:
    """Requests that found no copy of the base: its own metric, or with adapters the largest of its and theirs
    (a missing datapoint counts as 0)."""
    if not adapters:
        return no_capacity_metric(component_name)
    metrics = {f"m{i}": no_capacity_metric(name) for i, name in enumerate([component_name, *adapters])}
    return cw.MathExpression(
        expression=f"MAX([{', '.join(f'FILL({m}, 0)' for m in metrics)}])",
        using_metrics=metrics,
        label=f"NoCapacityInvocationFailures of {component_name} and its adapters",
        period=Duration.minutes(1),
    )


class ComponentScaling(Construct):
    """Scalable target + target tracking; with ``min_copies == 0`` also the scale-from-zero step policy and alarm."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        component: CfnResource,
        component_name: str,
        min_copies: int,
        max_copies: int,
        target_invocations_per_copy: int,
        adapters: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{component_name}",
            scalable_dimension=DIMENSION,
            min_capacity=min_copies,
            max_capacity=max_copies,
            role=iam.Role.from_role_arn(
                self,
                "ServiceLinkedRole",
                Stack.of(self).format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name=SERVICE_LINKED_ROLE,
                    arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                ),
                mutable=False,
            ),
        )
        # The name is a literal, so CloudFormation would not order them: register only once the component exists.
        self.target.node.add_dependency(component)
        self.target.scale_to_track_metric(
            "InvocationsPerCopy",
            target_value=target_invocations_per_copy,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_INVOCATIONS_PER_COPY,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        self.no_capacity_alarm: cw.Alarm | None = None
        if min_copies == 0:
            step = appscaling.StepScalingAction(
                self,
                "FromZero",
                scaling_target=self.target,
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
                cooldown=Duration.minutes(1),
            )
            step.add_adjustment(adjustment=1, lower_bound=0)
            self.no_capacity_alarm = cw.Alarm(
                self,
                "NoCapacity",
                metric=no_capacity(component_name, adapters),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{', '.join([component_name, *adapters])}: requests found no copy of "
                f"{component_name}; add one (scale from zero)",
            )
            self.no_capacity_alarm.add_alarm_action(cw_actions.ApplicationScalingAction(step))

"""NetworkStack: an isolated VPC with the endpoints the workloads need, flow logs, and workload security groups."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks import compliance
from stacks.constructs.log_group import encrypted_log_group
from stacks.settings import EnvironmentSettings

INTERFACE_ENDPOINTS = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Ecr": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,  # the agent runtime's traces
    "AgentCore": ec2.InterfaceVpcEndpointAwsService.BEDROCK_AGENTCORE,  # the agent runtime's own API
}


class NetworkStack(Stack):
    """Private isolated subnets only (no internet gateway, no NAT); AWS APIs through VPC endpoints."""

    def __init__(self, scope: Construct, id: str, *, settings: EnvironmentSettings, key: kms.IKey, **kwargs) -> None:
        net = settings.network
        self._zone_ids = net.availability_zone_ids
        super().__init__(scope, id, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(net.cidr),
            availability_zones=self.availability_zones,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20)
            ],
            restrict_default_security_group=True,
        )
        # Zone names map to different physical zones in each account; AgentCore documents zone IDs. Each subnet is
        # placed by AvailabilityZoneId (no synth-time lookup of the account's zone names).
        for subnet in self.vpc.isolated_subnets:
            cfn = subnet.node.default_child
            if not isinstance(cfn, ec2.CfnSubnet):
                raise TypeError(f"subnet {subnet.node.path}: expected a CfnSubnet as its default child")
            cfn.add_property_deletion_override("AvailabilityZone")
            cfn.add_property_override("AvailabilityZoneId", subnet.availability_zone)
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        provider = self.node.find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        compliance.acknowledge(provider, *compliance.RESTRICT_DEFAULT_SG_PROVIDER)

        flow_logs = encrypted_log_group(
            self, "FlowLogs", key=key, retention_days=net.flow_log_retention_days, destroy=settings.destroy
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        for name, gateway in {
            "S3": ec2.GatewayVpcEndpointAwsService.S3,
            "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
        }.items():
            self.vpc.add_gateway_endpoint(name, service=gateway, subnets=[self.subnets])
        endpoint_sg = self._security_group("EndpointsSg", "HTTPS to the VPC interface endpoints")
        endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(net.cidr), ec2.Port.tcp(443), "AWS APIs from the VPC")
        endpoints = dict(INTERFACE_ENDPOINTS)
        if settings.mlflow.kind == "tracking_server":
            # aws.sagemaker.<region>.experiments serves MLflow tracking servers (an MLflow App has no PrivateLink
            # service): https://docs.aws.amazon.com/sagemaker/latest/dg/mlflow-private-link-policy.html
            endpoints["MlflowTracking"] = ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_EXPERIMENTS
        for name, service in endpoints.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.subnets,
                security_groups=[endpoint_sg],
                private_dns_enabled=True,
                open=False,
            )

        # Security groups that later stacks attach their workloads to.
        self.training_sg = self._security_group("TrainingSg", "SageMaker training and processing jobs")
        self.training_sg.add_ingress_rule(self.training_sg, ec2.Port.all_tcp(), "distributed training between nodes")
        self.endpoint_sg = self._security_group("InferenceSg", "SageMaker inference endpoint")
        self.lambda_sg = self._security_group("LambdaSg", "Lambda functions")
        self.agent_sg = self._security_group("AgentSg", "AgentCore runtime")

    @property
    def subnet_ids(self) -> list[str]:
        """The private isolated subnets every workload runs in."""
        return self.vpc.select_subnets(subnet_type=self.subnets.subnet_type).subnet_ids

    def grant_network_interfaces(self, grantee: iam.IGrantable, security_group: ec2.ISecurityGroup, sid: str) -> None:
        """Let a SageMaker role manage its workload's network interfaces: only in this VPC's subnets, with
        ``security_group``. ec2:Vpc and ec2:Subnet are the condition keys the EC2 service authorization reference
        lists for these actions (CreateNetworkInterface has ec2:Vpc but no ec2:Subnet, hence its own statements):
        https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html. The Describe* calls
        have no resource-level permissions. ``sid`` prefixes the statements' ids (e.g. ``Jobs``)."""

        def arn(resource: str, name: str) -> str:
            return self.format_arn(service="ec2", resource=resource, resource_name=name)

        vpc, subnets, interfaces = (
            arn("vpc", self.vpc.vpc_id),
            [arn("subnet", s) for s in self.subnet_ids],
            arn("network-interface", "*"),
        )
        for statement in (
            iam.PolicyStatement(
                sid=f"{sid}DescribeTheNetwork",
                actions=[
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid=f"{sid}CreateInterfacesInTheirSubnetsAndGroups",
                actions=["ec2:CreateNetworkInterface"],
                resources=[*subnets, arn("security-group", security_group.security_group_id)],
            ),
            iam.PolicyStatement(
                sid=f"{sid}CreateInterfacesInTheVpc",
                actions=["ec2:CreateNetworkInterface"],
                resources=[interfaces],
                conditions={"ArnEquals": {"ec2:Vpc": vpc}},
            ),
            iam.PolicyStatement(
                sid=f"{sid}ManageTheirInterfaces",
                actions=[
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[interfaces],
                conditions={"ArnEquals": {"ec2:Vpc": vpc, "ec2:Subnet": subnets}},
            ),
        ):
            grantee.grant_principal.add_to_principal_policy(statement)
        compliance.acknowledge_grant(
            grantee, compliance.NETWORK_INTERFACES, "Resource::[*]", "Resource::arn:*:ec2:*:network-interface/[*]"
        )

    @property
    def availability_zones(self) -> list[str]:
        """The zone IDs from settings stand in for zone names (each subnet gets AvailabilityZoneId above), so synth
        never looks zones up in the account."""
        return list(self._zone_ids)

    def _security_group(self, id: str, description: str) -> ec2.SecurityGroup:
        # Egress is open but the subnets have no route out: traffic reaches only the VPC and its endpoints.
        return ec2.SecurityGroup(self, id, vpc=self.vpc, description=description, allow_all_outbound=True)

"""The architecture pictures (make diagram): drawn from the synthesized assembly, true to it, byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from aws_cdk import App, Fn, Stack, Stage
from aws_cdk import aws_bedrockagentcore as agentcore
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker

from tools.diagram import (
    Assembly,
    DiagramError,
    read_architecture,
    read_system,
    render_detail,
    render_system,
)
from tools.diagram.__main__ import main
from tools.diagram.graph import IMAGE
from tools.diagram.system import PARTS, PROMOTION
from tools.synth import synth

RULES = {rule.kind: rule for rule in PARTS}


@pytest.fixture(scope="module")
def app_out(stages) -> Path:
    """The session's assembly of the whole app (every environment and the delivery pipeline)."""
    out = Path(next(iter(stages.values())).node.scope.outdir)
    assert (out / "Delivery.template.json").exists(), "the session's app was synthesized without the pipeline"
    return out


def kinds(view, stage: str | None = None) -> set[str]:
    return {p.kind for p in view.parts if stage is None or p.stage == stage}


def flows(view) -> set[tuple[str, str, str]]:
    return {(f.source, f.target, f.label) for f in view.flows}


def assert_drawn_from(assembly: Assembly, view) -> None:
    """Every part comes from resources present in the assembly, its first of the types its rule maps."""
    for part in view.parts:
        assert part.resources and all(assembly.has(key) for key in part.resources), part.id
        if part.kind != "stacks":
            assert assembly.resources[part.resources[0]].type in RULES[part.kind].types, part.id
    ids = {p.id for p in view.parts} | {s.id for p in view.parts for s in p.steps}
    assert all(f.source in ids and f.target in ids for f in view.flows)


# --- the system picture of the real app ------------------------------------------------------------------------


def test_system_picture_draws_the_request_path_the_model_lifecycle_and_promotion(app_out):
    assembly = Assembly(app_out)
    view = read_system(assembly, "Prod")
    assert_drawn_from(assembly, view)
    assert kinds(view, "Prod") >= {
        "clinician",
        "agent",
        "endpoint",
        "base_component",
        "image",
        "patients",
        "reports",
        "artifacts",
        "mlflow",
        "stacks",
    }
    # Prod trains nothing: the pipeline, the registry of record and its approvals are Dev's, which forwards them to
    # the tooling account's bus, where they start the delivery pipeline.
    assert {"pipeline", "registry", "approval_rule"} & kinds(view, "Prod") == set()
    assert kinds(view, "Dev") >= {"pipeline", "registry", "approval_rule", "datasets"}
    assert kinds(view, "") == {"delivery", "event_bus", "pipeline_trigger"}
    drawn = flows(view)
    assert {
        ("Prod.clinician", "Prod.agent", "1 question / answer"),
        ("Prod.agent", "Prod.patients", "3 get_patient_record"),
        ("Prod.agent", "Prod.reports", "4 upload_diagnostic_report"),
        ("Prod.agent", "Prod.mlflow", "traces"),
        ("Dev.datasets", "Dev.pipeline", "training data"),
        ("Dev.pipeline", "Dev.registry", "model package (pending approval)"),
        ("Dev.registry", "Dev.approval_rule", "approved"),
        ("Dev.approval_rule", "Tooling.event_bus", "to the tooling account"),
        ("Tooling.event_bus", "Tooling.pipeline_trigger", ""),
        ("Tooling.pipeline_trigger", "Tooling.delivery", "start"),
    } <= drawn
    assert (
        len([f for f in view.flows if f.label == "2 chat completion"]) == 1
    )  # the component it names, or the endpoint
    pipeline = next(p for p in view.parts if p.kind == "pipeline")
    assert [s.label.split("\n")[0] for s in pipeline.steps] == [
        "Preprocess",
        "FineTune",
        "Evaluate",
        "QualityGate",
        "Register",
    ]
    promoted = {f.target: f.source for f in view.flows if f.kind == PROMOTION and f.target.endswith(".stacks")}
    assert sorted(promoted) == ["Dev.stacks", "Prod.stacks", "Staging.stacks"]
    steps = {s.id: s for p in view.parts for s in p.steps}
    assert "manual approval" in steps[promoted["Prod.stacks"]].label
    assert "manual approval" not in steps[promoted["Dev.stacks"]].label
    assert {a.stage: a.account for a in view.accounts} == {
        "": "444444444444",
        "Dev": "111111111111",
        "Staging": "222222222222",
        "Prod": "333333333333",
    }
    assert view.plumbing["Prod"]["IAM roles and policies"] > 0 and view.plumbing[""]["build projects"] > 0


def _without(app_out: Path, tmp_path: Path, stack: str) -> Path:
    """A copy of the assembly's manifests and templates, with one stack removed as if it had not been synthesized."""
    copy = tmp_path / "cdk.out"
    shutil.copytree(app_out, copy, ignore=shutil.ignore_patterns("asset.*", "source-archives"))
    for manifest in copy.glob("**/manifest.json"):
        data = json.loads(manifest.read_text())
        for id, artifact in list(data["artifacts"].items()):
            if artifact.get("displayName") == stack:
                (manifest.parent / artifact["properties"]["templateFile"]).unlink()
                del data["artifacts"][id]
                for other in data["artifacts"].values():
                    other["dependencies"] = [d for d in other.get("dependencies", []) if d != id]
        manifest.write_text(json.dumps(data))
    return copy


def test_removing_a_stack_removes_its_parts_and_their_flows(app_out, tmp_path):
    whole = read_system(Assembly(app_out), "Prod")
    assembly = Assembly(_without(app_out, tmp_path, "Prod/Agent"))
    view = read_system(assembly, "Prod")
    assert_drawn_from(assembly, view)
    assert not [p for p in view.parts if any(stack == "Prod/Agent" for stack, _ in p.resources)]
    prod = {p.id for p in view.parts if p.stage == "Prod"}
    gone = {p.id for p in whole.parts if p.stage == "Prod"} - prod
    assert gone == {"Prod.clinician", "Prod.agent", "Prod.patients"}

    def inside(v) -> set[tuple[str, str, str]]:  # flows within Prod and the tooling account
        ids = {p.id for p in v.parts if p.stage in ("Prod", "")} | {s.id for p in v.parts for s in p.steps}
        return {(f.source, f.target, f.label) for f in v.flows if {f.source, f.target} <= ids}

    assert inside(view) == {f for f in inside(whole) if not {f[0], f[1]} & gone}
    # Prod has no agent now: the picture shows the other environments' agents, each with its own request path.
    assert {p.id for p in view.parts if p.kind == "agent"} == {"Dev.agent", "Staging.agent"}
    assert ("Dev.agent", "Dev.patients", "3 get_patient_record") in flows(view)


def test_without_the_delivery_stack_there_is_no_tooling_account_and_no_promotion(app_out, tmp_path):
    view = read_system(Assembly(_without(app_out, tmp_path, "Delivery")), "Prod")
    assert "" not in {a.stage for a in view.accounts} and "delivery" not in kinds(view)
    assert not [f for f in view.flows if f.kind == PROMOTION]


def test_one_environment_synthesized_alone_is_drawn_without_the_pipeline(tmp_path):
    synth(str(tmp_path), environments="dev")
    assembly = Assembly(tmp_path)
    view = read_system(assembly, "Dev")
    assert_drawn_from(assembly, view)
    assert [a.stage for a in view.accounts] == ["Dev"] and kinds(view, "") == set()
    assert ("Dev.clinician", "Dev.agent", "1 question / answer") in flows(view)


def test_both_pictures_render_the_same_png_twice(app_out, tmp_path):
    for run in ("1", "2"):
        assert (
            main(
                [
                    str(app_out),
                    "--stage",
                    "Prod",
                    "--output",
                    f"{tmp_path}/{run}.png",
                    "--detail-output",
                    f"{tmp_path}/{run}-detail.png",
                ]
            )
            == 0
        )
    for name in ("", "-detail"):
        first, second = ((tmp_path / f"{run}{name}.png").read_bytes() for run in ("1", "2"))
        assert first.startswith(b"\x89PNG") and first == second
    assert (tmp_path / "1.png").read_bytes() != (tmp_path / "1-detail.png").read_bytes()


def test_an_unknown_stage_is_refused_naming_the_synthesized_ones(app_out, capsys):
    with pytest.raises(DiagramError, match="stage 'Qa' is not in the assembly; synthesized stages: Dev, Staging, Prod"):
        read_system(Assembly(app_out), "Qa")
    assert main([str(app_out), "--stage", "Qa"]) == 2
    assert "synthesized stages: Dev, Staging, Prod" in capsys.readouterr().err


def test_a_folder_without_an_assembly_says_to_synthesize(tmp_path):
    with pytest.raises(DiagramError, match=f"no cloud assembly in {tmp_path}: run `make synth` first"):
        Assembly(tmp_path)


# --- the detailed graph -------------------------------------------------------------------------------------------


def test_detail_draws_one_cluster_per_stack_and_arrows_only_toward_dependencies(app_out):
    arch = read_architecture(Assembly(app_out), "Prod")
    assert [c.name for c in arch.clusters][0] == "Delivery"
    expected = ["Prod/Agent", "Prod/Data", "Prod/Inference", "Prod/Mlops", "Prod/Network"]
    assert sorted(c.name for c in arch.clusters[1:]) == expected == sorted(arch.deploys)
    assert all(c.components for c in arch.clusters)
    depends = {c.name: set(c.depends_on) for c in arch.clusters}
    across = [(s, t) for s, t in arch.edges if s[0] != t[0]]
    assert across and all(t[0] in depends[s[0]] for s, t in across)


# --- resources other engineers are adding: a small app declares them ---------------------------------------------

BUS = "clinical-promotion"


def _tiny_app(out: Path, image_dir: Path) -> None:
    """Dev trains (registry of record, approval forwarded to the tooling account's bus); Prod serves an adapter
    component declared in CloudFormation; the tooling account's rule starts the delivery pipeline."""
    app = App(outdir=str(out), builtin_cloud_formation_validation=False)  # a fixture of types, not a deployable app
    dev, prod = (
        Stage(app, n, env={"account": a, "region": "us-east-1"})
        for n, a in (("Dev", "111111111111"), ("Prod", "333333333333"))
    )
    for stage in (dev, prod):
        data = Stack(stage, "Data")
        for bucket in ("Datasets", "Artifacts", "Reports"):
            s3.CfnBucket(data, bucket)
    mlops = Stack(dev, "Mlops")
    datasets = dev.node.find_child("Data").node.find_child("Datasets")
    artifacts = dev.node.find_child("Data").node.find_child("Artifacts")
    image = ecr_assets.DockerImageAsset(mlops, "TrainingImage", directory=str(image_dir))
    sagemaker.CfnMlflowTrackingServer(
        mlops,
        "Mlflow",
        artifact_store_uri=Fn.join("", ["s3://", artifacts.ref]),
        role_arn="arn:aws:iam::111111111111:role/mlflow",
        tracking_server_name="mlflow",
    )
    sagemaker.CfnModelPackageGroup(mlops, "Registry", model_package_group_name="clinical-adapters")
    definition = {
        "Steps": [
            {"Name": "Train", "Type": "Training", "Arguments": {"Image": "${Image}", "Data": "s3://${Datasets}/raw"}},
            {
                "Name": "Register",
                "Type": "RegisterModel",
                "Arguments": {"Group": "clinical-adapters", "Model": {"Get": "Steps.Train.ModelArtifacts"}},
            },
        ]
    }
    sagemaker.CfnPipeline(
        mlops,
        "Pipeline",
        pipeline_name="finetune",
        role_arn="arn:aws:iam::111111111111:role/p",
        pipeline_definition={
            "PipelineDefinitionBody": Fn.sub(
                json.dumps(definition), {"Image": image.image_uri, "Datasets": datasets.ref}
            )
        },
    )
    events.CfnRule(
        mlops,
        "Promote",
        event_pattern={
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": ["clinical-adapters"]},
        },
        targets=[{"id": "Bus", "arn": f"arn:aws:events:us-east-1:444444444444:event-bus/{BUS}"}],
    )

    inference = Stack(prod, "Inference")
    endpoint = sagemaker.CfnEndpoint(inference, "Endpoint", endpoint_config_name="config", endpoint_name="llm")
    sagemaker.CfnInferenceComponent(
        inference,
        "Base",
        endpoint_name=endpoint.attr_endpoint_name,
        inference_component_name="llama",
        specification={"modelName": "m"},
    )
    prod_artifacts = prod.node.find_child("Data").node.find_child("Artifacts")
    sagemaker.CfnInferenceComponent(
        inference,
        "Adapter",
        endpoint_name=endpoint.attr_endpoint_name,
        inference_component_name="clinical-lora",
        specification={
            "baseInferenceComponentName": "llama",
            "container": {"artifactUrl": Fn.join("", ["s3://", prod_artifacts.ref, "/adapters/ab12.tar.gz"])},
        },
    )
    agent = Stack(prod, "Agent")
    table = dynamodb.CfnTable(
        agent,
        "Patients",
        key_schema=[{"attributeName": "id", "keyType": "HASH"}],
        attribute_definitions=[{"attributeName": "id", "attributeType": "S"}],
    )
    runtime = agentcore.CfnRuntime(
        agent,
        "Runtime",
        agent_runtime_name="clinical_agent",
        role_arn="arn:aws:iam::1:role/r",
        agent_runtime_artifact={"containerConfiguration": {"containerUri": "x"}},
        environment_variables={"ENDPOINT": "llm", "COMPONENT": "clinical-lora", "TABLE": table.ref},
    )
    agentcore.CfnRuntimeEndpoint(agent, "Live", agent_runtime_id=runtime.attr_agent_runtime_id, name="live")

    tooling = Stack(app, "Delivery", env={"account": "444444444444", "region": "us-east-1"})
    bus = events.CfnEventBus(tooling, "Bus", name=BUS)
    pipeline = codepipeline.CfnPipeline(
        tooling,
        "Pipeline",
        role_arn="arn:aws:iam::444444444444:role/p",
        stages=[
            {
                "name": "Source",
                "actions": [
                    {
                        "name": "Repo",
                        "actionTypeId": {
                            "category": "Source",
                            "owner": "AWS",
                            "provider": "CodeStarSourceConnection",
                            "version": "1",
                        },
                        "configuration": {"FullRepositoryId": "org/repo"},
                    }
                ],
            },
            {
                "name": "Build",
                "actions": [
                    {
                        "name": "Synth",
                        "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
                    }
                ],
            },
            *(
                {
                    "name": env,
                    "actions": [
                        *(
                            [
                                {
                                    "name": "Approve",
                                    "runOrder": 1,
                                    "actionTypeId": {
                                        "category": "Approval",
                                        "owner": "AWS",
                                        "provider": "Manual",
                                        "version": "1",
                                    },
                                }
                            ]
                            if env == "Prod"
                            else []
                        ),
                        {
                            "name": "Deploy",
                            "runOrder": 2,
                            "actionTypeId": {
                                "category": "Deploy",
                                "owner": "AWS",
                                "provider": "CloudFormation",
                                "version": "1",
                            },
                            "configuration": {"StackName": f"{env}-Data"},
                        },
                    ],
                }
                for env in ("Dev", "Prod")
            ),
        ],
        artifact_store={"type": "S3", "location": "bucket"},
    )
    events.CfnRule(
        tooling,
        "Start",
        event_bus_name=bus.ref,
        event_pattern={"detail-type": ["SageMaker Model Package State Change"]},
        targets=[
            {"id": "Pipeline", "arn": Fn.sub("arn:aws:codepipeline:us-east-1:444444444444:${P}", {"P": pipeline.ref})}
        ],
    )
    events.CfnRule(tooling, "Nightly", schedule_expression="rate(1 day)")  # not about approvals: no part
    app.synth()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    image_dir = tmp_path_factory.mktemp("image")
    (image_dir / "Dockerfile").write_text("FROM public.ecr.aws/docker/library/python:3.11-slim\n")
    out = tmp_path_factory.mktemp("tiny.out")
    _tiny_app(out, image_dir)
    return out


def test_adapter_components_tracking_servers_buses_and_images_become_parts(tiny):
    assembly = Assembly(tiny)
    view = read_system(assembly, "Prod")
    assert_drawn_from(assembly, view)
    parts = {p.id: p for p in view.parts}
    assert parts["Prod.adapter_component"].detail == "clinical-lora"
    assert parts["Dev.mlflow"].detail == "tracking server mlflow"
    assert parts["Tooling.event_bus"].detail == BUS
    assert [p.id for p in view.parts if p.kind == "pipeline_trigger"] == ["Tooling.pipeline_trigger"]
    assert parts["Dev.image"].detail == "FROM public.ecr.aws/docker/library/python:3.11-slim"
    assert assembly.resources[parts["Dev.image"].resources[0]].type == IMAGE
    assert {
        ("Prod.agent", "Prod.adapter_component", "2 chat completion"),
        ("Prod.adapter_component", "Prod.base_component", "LoRA on"),
        ("Prod.artifacts", "Prod.adapter_component", "adapter"),
        ("Dev.image", "Dev.pipeline", "image"),
        ("Dev.approval_rule", "Tooling.event_bus", "to the tooling account"),
        ("Tooling.event_bus", "Tooling.pipeline_trigger", ""),
        ("Tooling.pipeline_trigger", "Tooling.delivery", "start"),
    } <= flows(view)
    assert not [f for f in view.flows if (f.source, f.target) == ("Prod.agent", "Prod.endpoint")]
    pipeline = parts["Dev.pipeline"]
    assert [s.label for s in pipeline.steps] == ["Train\nTraining", "Register\nRegisterModel"]
    assert pipeline.step_edges == [("Dev.pipeline.Train", "Dev.pipeline.Register", "")]


def test_another_environment_shows_what_it_alone_holds_and_its_neighbours(tiny):
    view = read_system(Assembly(tiny), "Prod")
    assert "pipeline" not in kinds(view, "Prod")
    # Dev trains: its pipeline, registry and approval rule (Prod has none), with what they use; not its buckets
    # that nothing drawn uses.
    assert kinds(view, "Dev") == {"pipeline", "mlflow", "registry", "approval_rule", "image", "datasets", "stacks"}
    stage = {p.id: p.stage for p in view.parts} | {s.id: p.stage for p in view.parts for s in p.steps}
    assert all(stage[f.source] == stage[f.target] or "" in (stage[f.source], stage[f.target]) for f in view.flows)
    steps = {s.id: s for p in view.parts for s in p.steps}
    assert steps["Tooling.delivery.Prod"].label == "Prod\nmanual approval → deploy 1 stacks"


def test_the_small_app_renders_deterministically(tiny, tmp_path):
    assembly = Assembly(tiny)
    view = read_system(assembly, "Prod")
    first = render_system(view, tmp_path / "a.png", title="t").read_bytes()
    assert first == render_system(view, tmp_path / "b.png", title="t").read_bytes()
    detail = render_detail(read_architecture(assembly, "Prod"), tmp_path / "d.png", title="t")
    assert detail.read_bytes().startswith(b"\x89PNG")

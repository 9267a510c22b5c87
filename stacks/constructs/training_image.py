"""The training image: containers/training/ built FROM the pinned PyTorch DLC as a CDK image asset (linux/amd64).

At synth the folder is only staged into the cloud assembly; the image is built and pushed at publish/deploy time
(a Docker daemon and a login to the base image's registry are needed then: `make deploy` checks both).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.constructs.bundle_files import EXCLUDE_GLOBS

CONTAINER_DIR = Path(__file__).resolve().parents[2] / "containers" / "training"


class TrainingImage(Construct):
    """``bind(grantable)`` returns the image URI and lets ``grantable`` pull it."""

    def __init__(self, scope: Construct, id: str, *, base_image: str, directory: Path = CONTAINER_DIR) -> None:
        super().__init__(scope, id)
        if not (directory / "Dockerfile").is_file():
            raise FileNotFoundError(f"training image: no Dockerfile in {directory}")
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(directory),
            build_args={"BASE_IMAGE": base_image},
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=list(EXCLUDE_GLOBS),  # local run leftovers would change the hash
        )

    def bind(self, grantable: iam.IGrantable) -> str:
        self.asset.repository.grant_pull(grantable)
        return self.asset.image_uri

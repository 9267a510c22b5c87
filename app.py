#!/usr/bin/env python3
"""CDK entry point: `cdk synth` runs this. The whole configuration (config/) is loaded and validated first; an
invalid one exits with the message and writes nothing. Then stacks.app_builder builds everything from it."""

import sys
from pathlib import Path

import aws_cdk as cdk

from stacks.app_builder import build_app
from stacks.settings import ConfigError, load_app
from tools.assembly import normalize

app = cdk.App()
try:
    settings = load_app(app.node.get_all_context())
except ConfigError as e:
    sys.exit(f"error: {e}")
build_app(app, settings)
normalize(Path(app.synth().directory))

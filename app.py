#!/usr/bin/env python3
"""CDK entry point: `cdk synth` runs this. Everything is built from config/ by stacks.app_builder."""

import sys
from pathlib import Path

import aws_cdk as cdk

from stacks.app_builder import build_app
from stacks.settings import ConfigError
from tools.assembly import normalize

app = cdk.App()
try:
    build_app(app)
except ConfigError as e:
    sys.exit(f"error: {e}")
normalize(Path(app.synth().directory))

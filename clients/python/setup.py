"""Generates the gRPC stubs from ../../proto whenever the package is built.

grpcio-tools is a build requirement (pyproject.toml), so `pip install .`
(and `pip install -e .`) produce chat_client/_gen before setuptools looks
for the packages.
"""

import subprocess
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

subprocess.run([sys.executable, str(HERE / "generate.py")], check=True)

setup()

"""For tools that look for a setup.py; the package is described in pyproject.toml."""
from setuptools import setup

setup()

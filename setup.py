"""Packaging shim for Beam's ``--setup_file``: Dataflow workers install altcorpus from the sdist built from this.

Everything (name, version, dependencies, packages, package data such as ``pipeline/sql/*.sql``) is declared in
``pyproject.toml``; setuptools reads it from there. Beam builds the sdist with ``python -m build --sdist`` when
``build`` is installed and falls back to ``python setup.py sdist``, which is why this file exists at all.
"""

from setuptools import setup

setup()

"""Packages (the rest is in pyproject.toml): the server's (namespace packages
too: templates and static files ship with them), and the client,
which lives in api/client (the outside interface) and installs as ``dsa``."""

from setuptools import find_namespace_packages, find_packages, setup

SERVER = ["api*", "worker*", "core*", "features*", "migrations*"]

setup(
    packages=[
        *find_namespace_packages(include=SERVER, exclude=["api.client", "api.client.*"]),
        "dsa",
        *(f"dsa.{p}" for p in find_packages("api/client")),
    ],
    package_dir={"dsa": "api/client"},
)

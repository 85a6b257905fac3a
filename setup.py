"""Build the C extension core._rowhash; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("core._rowhash", ["core/_rowhash.c"], extra_compile_args=["-O3"]),
    ],
)

"""Builds the two optional C accelerators; all other metadata is in pyproject.toml.

Both are optional: without a C compiler the install still succeeds and the pure-Python
versions (the reference implementations, see etl/normalize/project.py and
etl/load/copytext.py) do the work, several times slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "etl.normalize._cproject",
            ["etl/normalize/_cproject.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "etl.load._ccopy",
            ["etl/load/_ccopy.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)

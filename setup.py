"""Builds the optional C accelerators; all other metadata is in pyproject.toml.

Both are optional: without a C compiler the install still succeeds and the pure-Python
versions (the reference implementations: etl/extract/split.py, etl/normalize/project.py and
etl/load/copyformat.py) do the work, about 1.6x slower on a big load.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "etl.normalize._cproject",
            ["etl/normalize/_cproject.c", "etl/normalize/_cbuild.c"],
            depends=["etl/normalize/_cnormalize.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "etl.extract._cscan",
            ["etl/extract/_cscan.c"],
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

"""Only the optional C encoder lives here; everything else about the package is in pyproject.toml.

`siemconn.queue._jsonenc` is optional: without a C compiler (or Python headers) the build goes on
without it and siemconn encodes with ujson and the standard library instead, with the same bytes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "siemconn.queue._jsonenc",
            ["src/siemconn/queue/_jsonenc.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)

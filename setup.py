"""Only the optional C extensions live here; everything else about the package is in pyproject.toml.

`siemconn.events._jsonenc` (the event encoder) and `siemconn.events._transcode` (the page transcoder) are
optional: without a C compiler or Python's headers the build goes on without them, and siemconn encodes
with ujson and the standard library instead, with the same bytes (its start-up log line names the
encoder in use).
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
HEADER = ["src/siemconn/events/_jsonbuf.h"]

setup(
    ext_modules=[
        Extension(
            name,
            [f"src/siemconn/events/{name.rsplit('.', 1)[1]}.c"],
            depends=HEADER,
            optional=True,
            extra_compile_args=FLAGS,
        )
        for name in ("siemconn.events._jsonenc", "siemconn.events._transcode")
    ]
)

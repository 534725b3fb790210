"""The optional C extension of the fused JPEG region decode (``ray_ingest.read._jpegcrop``),
built against the system's libjpeg-turbo (``libjpeg62-turbo-dev`` / ``libjpeg-turbo-devel``).

Everything else is in ``pyproject.toml``. ``optional=True``: without a compiler or the libjpeg
headers the install still succeeds, and crops decode through simplejpeg instead (slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ray_ingest.read._jpegcrop",
            sources=["ray_ingest/read/_jpegcrop.c"],
            libraries=["jpeg"],
            extra_compile_args=["-O3", "-std=c99"],
            extra_link_args=["-lpthread"],
            optional=True,
        )
    ]
)

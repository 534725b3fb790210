"""Packages that are also the function they are named after.

``ray_ingest.convert`` and ``ray_ingest.train`` are folders of modules and, for users, the
functions ``ray_ingest.convert(src, out, ...)`` and ``ray_ingest.train(config)``. Python binds a
subpackage as an attribute of its parent once it is imported, which would shadow a function of
the same name; so the package module itself is made callable.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Callable


def make_package_callable(module_name: str, function: Callable) -> None:
    """Calling the module ``module_name`` calls ``function``."""

    class _CallablePackage(types.ModuleType):
        @functools.wraps(function)
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallablePackage

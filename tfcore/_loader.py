"""Find and preload oneDNN's shared library from its pip wheel before tfcore._C loads.

The extension has an RPATH to the wheel's lib directory, which covers regular installs;
the preload also covers in-place and editable builds, with no LD_LIBRARY_PATH.
"""

from __future__ import annotations

import ctypes
import importlib.metadata as md
import os

ONEDNN_DIST = "onednn-cpu-gomp"
ONEDNN_SONAME = "libdnnl.so.3"


def find_libdnnl() -> str:
    try:
        files = md.distribution(ONEDNN_DIST).files or []
    except md.PackageNotFoundError as e:
        raise ImportError(
            f"tfcore needs the '{ONEDNN_DIST}' package (oneDNN); install it with "
            f"pip install {ONEDNN_DIST}==2023.2.0"
        ) from e
    for f in files:
        if str(f).replace("\\", "/").endswith(ONEDNN_SONAME):
            path = os.path.realpath(f.locate())
            if os.path.exists(path):
                return path
    raise ImportError(f"tfcore: '{ONEDNN_DIST}' is installed but {ONEDNN_SONAME} is missing from it")


def preload_onednn() -> str:
    path = find_libdnnl()
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise ImportError(f"tfcore: could not load oneDNN from {path}: {e}") from e
    return path

"""Build tfcore._C (C11) against oneDNN from its PyPI wheel.

oneDNN is found through the installed distributions' file lists, which works under
pip's build isolation (where sys.prefix is not the overlay holding the wheel). The
extension links the exact libdnnl.so.N and carries an $ORIGIN-relative RPATH to the
<prefix>/lib directory the runtime wheel installs into; tfcore/__init__.py also
preloads the library so in-place and editable builds work without LD_LIBRARY_PATH.

Kernels are written once against csrc/kernels/simd.h and compiled once per instruction set:
every kernel source that defines per-ISA functions (it uses TF_ISA_FN) is compiled again for
each entry of ISA_PASSES with -DTF_ISA_PASS and that ISA's flags; tf_isa() picks a version at
run time. A new ISA is one entry here and one backend in simd.h.

Environment:
  TFCORE_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer.
  TFCORE_DEBUG=1     -O0 -g.
"""

import glob
import importlib.metadata as md
import os
import sys

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ONEDNN_RUNTIME = "onednn-cpu-gomp"
ONEDNN_DEVEL = "onednn-devel-cpu-gomp"


def _find(dist_name, suffix):
    try:
        files = md.distribution(dist_name).files or []
    except md.PackageNotFoundError:
        sys.exit(f"tfcore build: the '{dist_name}' wheel is not installed (pinned in pyproject.toml)")
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            return os.path.realpath(f.locate())
    sys.exit(f"tfcore build: '{dist_name}' has no file ending in {suffix}")


header = _find(ONEDNN_DEVEL, "include/oneapi/dnnl/dnnl.h")
include_dir = os.path.dirname(os.path.dirname(os.path.dirname(header)))
libdnnl = _find(ONEDNN_RUNTIME, "libdnnl.so.3")


debug = os.environ.get("TFCORE_DEBUG") == "1"
sanitize = os.environ.get("TFCORE_SANITIZE") == "1"
cflags = [
    "-std=c11",
    "-fopenmp",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Werror=implicit-function-declaration",
    "-Werror=incompatible-pointer-types",
    "-Werror=int-conversion",
]
cflags += ["-O0", "-g"] if debug else ["-O3", "-g0"]
ldflags = ["-fopenmp", "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../../.."]
if sanitize:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    cflags += san + ["-O1", "-g"]
    ldflags += san

# name -> compiler flags of each per-ISA pass (the backend of kernels/simd.h follows from them)
ISA_PASSES = {
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
}
sources = sorted(glob.glob("csrc/**/*.c", recursive=True))
isa_sources = [s for s in sources if "TF_ISA_FN(" in open(s, encoding="utf-8").read()]


class BuildExt(build_ext):
    """Compiles the per-ISA passes of the kernel sources that have them into objects of
    their own (build/temp.../<isa>/csrc/...) and links them into the extension."""

    def build_extension(self, ext):
        objects = []
        for isa, flags in ISA_PASSES.items():
            objects += self.compiler.compile(
                isa_sources,
                output_dir=os.path.join(self.build_temp, isa),
                macros=ext.define_macros + [("TF_ISA_PASS", "1")],
                include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args + flags,
                depends=ext.depends,
            )
        ext.extra_objects = [libdnnl] + objects
        super().build_extension(ext)


ext = Extension(
    "tfcore._C",
    sources=sources,
    depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),
    include_dirs=[include_dir, np.get_include(), "csrc"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_22_API_VERSION")],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    extra_objects=[libdnnl],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})

"""The layout rules (docs/contributing.md), checked so a change that breaks one fails here.

C side: kernels are pure C; dependencies point kernels -> core -> layers -> functions;
csrc/registry.h names every type and function table and each lives in the file it names;
tfcore/_C.pyi states exactly what tfcore._C exports, and every public name reaches users.
Python side: see the second half of this file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import tfcore
import tfcore.functional
from tfcore import _C

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

# ------------------------------------------------------------------ C: includes and layers

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
# What each role may include of tfcore's own headers (by folder): one way only.
ALLOWED = {
    "kernels": ("kernels/",),
    "core": ("kernels/", "core/", "tfcore.h", "registry.h"),
    "layers": ("kernels/", "core/", "layers/", "tfcore.h"),
    "functions": ("kernels/", "core/", "layers/", "functions/", "tfcore.h"),
}
# System headers a pure kernel must not use: they bring the interpreter, NumPy or oneDNN.
FORBIDDEN_SYSTEM = ("Python.h", "numpy/", "oneapi/", "structmember.h", "dnnl")


def c_files(folder: str):
    return sorted(p for p in (CSRC / folder).rglob("*") if p.suffix in (".c", ".h"))


def includes(path: Path):
    return INCLUDE.findall(path.read_text())


def layering_violations(folder: str, files) -> list:
    bad = []
    for p in files:
        for kind, name in includes(p):
            rel = p.relative_to(CSRC) if p.is_relative_to(CSRC) else p.name
            if kind == '"' and not name.startswith(ALLOWED[folder]):
                bad.append(f"{rel} includes \"{name}\" ({folder}/ may include {', '.join(ALLOWED[folder])})")
            if folder == "kernels" and kind == "<" and name.startswith(FORBIDDEN_SYSTEM):
                bad.append(f"{rel} includes <{name}>: kernels are pure C (no Python, NumPy or oneDNN)")
    return bad


def test_csrc_has_only_the_four_roles():
    loose = sorted(p.name for p in CSRC.iterdir() if p.is_file() and p.name not in ("tfcore.h", "registry.h"))
    dirs = sorted(p.name for p in CSRC.iterdir() if p.is_dir())
    assert loose == [], f"csrc/ holds only tfcore.h and registry.h at its top; move {loose} into a role folder"
    assert dirs == sorted(ALLOWED), dirs


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_includes_point_one_way(folder):
    bad = layering_violations(folder, c_files(folder))
    assert not bad, "\n".join(bad)


def test_layering_check_catches_a_kernel_that_includes_python(tmp_path):
    # the rule itself must be able to fail (docs/contributing.md shows it failing too)
    k = tmp_path / "bad_kernel.c"
    k.write_text('#include "tfcore.h"\n#include <Python.h>\n#include "kernels/kernel.h"\n')
    bad = layering_violations("kernels", [k])
    assert len(bad) == 2 and "tfcore.h" in bad[0] and "Python.h" in bad[1]


# ------------------------------------------------------------------ C: the registry

X_TYPE = re.compile(r"X\((\w+),\s*(\w+),\s*(\w+)\)")
X_FUNC = re.compile(r"X\((\w+),\s*(\w+)\)")
# Types that share a file, with the reason; every other type lives in layers/<snake name>.c.
SHARED_FILES = {"LayerNorm": "norm", "RMSNorm": "norm"}  # one type pair over one kernel
# layers/ files that are a part of a type rather than a type, with the reason.
LAYER_PARTS = {"linear_gemv": "Linear's few-row (decoding) GEMV path, called by Linear only"}


def registry():
    text = (CSRC / "registry.h").read_text()
    types_block = text[text.index("#define TF_TYPES(X)"):text.index("#define TF_FUNCTIONS(X)")]
    funcs_block = text[text.index("#define TF_FUNCTIONS(X)"):]
    return X_TYPE.findall(types_block), X_FUNC.findall(funcs_block)


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def test_snake_names():
    assert snake("KVCache") == "kv_cache"
    assert snake("MultiHeadAttention") == "multi_head_attention"
    assert snake("RMSNorm") == "rms_norm"


def registry_problems(types, funcs) -> list:
    bad = []
    for name, spec, file in types:
        want = SHARED_FILES.get(name, snake(name))
        if file != want:
            bad.append(f"registry.h: {name} is in layers/{file}.c; a type lives in layers/{want}.c")
        path = CSRC / "layers" / f"{file}.c"
        if not path.exists() or not re.search(rf"^PyType_Spec {spec} = \{{", path.read_text(), re.M):
            bad.append(f"registry.h: {name}'s spec {spec} is not defined in layers/{file}.c")
        if not isinstance(getattr(_C, name, None), type):
            bad.append(f"registry.h: {name} is not a type of tfcore._C")
    for table, file in funcs:
        path = CSRC / "functions" / f"{file}.c"
        if not path.exists() or not re.search(rf"^PyMethodDef {table}\[\] = \{{", path.read_text(), re.M):
            bad.append(f"registry.h: {table} is not defined in functions/{file}.c")
    listed = {f for _, _, f in types} | set(LAYER_PARTS)
    for p in sorted((CSRC / "layers").glob("*.c")):
        if p.stem not in listed:
            bad.append(f"layers/{p.name} implements no type of registry.h (a layer file is named after its type)")
    for p in sorted((CSRC / "functions").glob("*.c")):
        if p.stem not in {f for _, f in funcs}:
            bad.append(f"functions/{p.name} has no function table in registry.h")
    return bad


def test_registry_names_every_type_and_function_file():
    types, funcs = registry()
    assert len(types) >= 10 and len(funcs) >= 9  # the parse found the lists
    bad = registry_problems(types, funcs)
    assert not bad, "\n".join(bad)


def test_registry_check_catches_a_misnamed_type():
    types, funcs = registry()
    bad = registry_problems(types + [("WindowAttention", "tf_window_attention_spec", "swin_window")], funcs)
    assert any("layers/window_attention.c" in b for b in bad), bad


# ------------------------------------------------------------------ C: the stub and exports

# Names of tfcore._C that are not re-exported, with the reason.
INTERNAL = {
    "_set_reference_kernels": "tests force the plain reference kernels",
    "_set_thread_override": "tfcore.threads() is the public form",
    "config": "tfcore.show_config() prints it",
    "bfloat16_to_float32": "checkpoint loading (tfcore.safetensors)",
    "float32_to_bfloat16": "tfcore convert --dtype bfloat16",
}


def stub_names() -> set:
    import ast

    tree = ast.parse((ROOT / "tfcore" / "_C.pyi").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
    return names


def module_names() -> set:
    return {n for n in dir(_C) if not n.startswith("__")}


def test_stub_matches_the_module_exactly():
    stub, mod = stub_names(), module_names()
    assert not mod - stub, f"tfcore/_C.pyi lacks {sorted(mod - stub)}"
    assert not stub - mod, f"tfcore/_C.pyi declares {sorted(stub - mod)}, which tfcore._C does not have"


def test_every_public_name_reaches_users():
    missing = []
    for name in sorted(module_names()):
        obj = getattr(_C, name)
        exported = getattr(tfcore, name, None) is obj or getattr(tfcore.functional, name, None) is obj
        if not exported and name not in INTERNAL:
            missing.append(name)
    assert not missing, f"tfcore._C names neither re-exported nor listed as internal: {missing}"
    stale = sorted(set(INTERNAL) - module_names())
    assert not stale, f"INTERNAL lists names tfcore._C no longer has: {stale}"

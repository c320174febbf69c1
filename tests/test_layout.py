"""The layout rules (docs/contributing.md), checked cheaply so the tree keeps showing the
architecture: which file may include or import which, and that each fact (a family, a model
class, its model_type, a C type, a function table, a public name) is stated in one place.

Python side: every family module is imported and registered, no family imports another's
private names, generation and the runtime do not import models. C side: kernels are pure C,
includes point kernels -> core -> layers -> functions, csrc/registry.h names every type and
function table and each sits in the file it names, tfcore/_C.pyi states exactly what
tfcore._C exports and every public name is re-exported or listed as internal."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest

import tfcore
import tfcore.functional
from tfcore import _C, models
from tfcore.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tfcore")
MODELS = os.path.join(PACKAGE, "models")


# ==== Python side: tfcore/models/ and the modules around it ===============================

# What a family file may import from tfcore.models besides public classes of other families.
SHARED = {"base", "encoder", "decoder", "seq2seq", "vision", "registry", "mix_transformer"}


def families() -> list:
    """Module names of the family files: every tfcore/models/*.py except the shared ones."""
    names = [f[:-3] for f in os.listdir(MODELS) if f.endswith(".py") and f != "__init__.py"]
    return sorted(n for n in names if n not in SHARED)


def imports(path: str):
    """(module, names, line) for every import in the file, function-level ones included,
    with relative imports resolved to dotted names: ``from .bert import X`` in
    tfcore/models/vit.py is ("tfcore.models.bert", ["X"], n); ``from . import bert`` is
    ("tfcore.models.bert", [], n) (a whole module)."""
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    package = rel.rsplit(".", 1)[0] if not rel.endswith("__init__") else rel[: -len(".__init__")]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            if node.module is None:  # from . import a, b: each name is a module
                for a in node.names:
                    yield f"{module}.{a.name}", [], node.lineno
            else:
                yield module, [a.name for a in node.names], node.lineno


def family_of(module: str):
    """'bert' for tfcore.models.bert (or anything inside it), None for other modules."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["tfcore", "models"] and len(parts) > 2 else None


# -- rule 3: every family is imported by models/__init__.py, every model class registered


def test_every_family_is_imported_by_models_init():
    path = os.path.join(MODELS, "__init__.py")
    starred = {family_of(m) for m, names, _ in imports(path) if names == ["*"]}
    missing = sorted(set(families()) - starred)
    assert not missing, f"tfcore/models/__init__.py lacks 'from .<family> import *' for {missing}"
    assert set(models._SHARED_MODULES) == SHARED, "models._SHARED_MODULES and this test's SHARED disagree"
    for name in families():
        assert getattr(models, name).__all__, f"tfcore/models/{name}.py has an empty __all__"


def test_registered_classes_are_the_public_model_classes():
    public = {getattr(models, n) for n in models.__all__}
    registered = set(registry.classes())
    unlisted = sorted(c.__name__ for c in registered - public)
    assert not unlisted, (
        f"registered but not in tfcore.models.__all__ (add them to their family's __all__): {unlisted}"
    )
    model_classes = {c for c in public if isinstance(c, type) and issubclass(c, models.PreTrainedModel)}
    unregistered = sorted(c.__name__ for c in model_classes - registered - {models.PreTrainedModel})
    assert not unregistered, f"in tfcore.models.__all__ but not @register-ed: {unregistered}"


# -- rule 4 and the family-file import rule: families share code through the shared modules


def test_no_family_imports_a_private_name_from_another_family():
    bad = []
    for name in families():
        path = os.path.join(MODELS, f"{name}.py")
        for module, names, line in imports(path):
            other = family_of(module)
            if other in families() and other != name:
                bad += [
                    f"tfcore/models/{name}.py:{line}: {n} from {module}" for n in names if n.startswith("_")
                ]
                if not names and module.split(".")[-1].startswith("_"):
                    bad.append(f"tfcore/models/{name}.py:{line}: module {module}")
    assert not bad, (
        "family files import private names of other families (move them to a shared module):\n"
        + "\n".join(bad)
    )


def test_family_files_import_only_shared_modules_and_public_classes():
    bad = []
    for name in families():
        path = os.path.join(MODELS, f"{name}.py")
        for module, names, line in imports(path):
            where = f"tfcore/models/{name}.py:{line}"
            if module == "tfcore.models":
                bad.append(f"{where}: imports the tfcore.models package ({names or 'whole'})")
                continue
            other = family_of(module)
            if other is None or other in SHARED or other == name:
                continue
            if other not in families():
                bad.append(f"{where}: imports {module}, neither shared nor a family")
            elif not names:
                bad.append(f"{where}: imports the whole family module {module}")
            else:
                exported = getattr(models, other).__all__
                bad += [
                    f"{where}: {n} is not a public class of {other} (its __all__)"
                    for n in names
                    if n not in exported
                ]
    assert not bad, (
        "family files may import only "
        + ", ".join(sorted(SHARED))
        + " and the public classes of other families:\n"
        + "\n".join(bad)
    )


# -- dependencies point one way: the runtime and the generation loop know no model family


@pytest.mark.parametrize("path", ["generation.py", "_runtime.py"])
def test_module_does_not_import_tfcore_models(path):
    bad = [
        f"tfcore/{path}:{line}: {module}"
        for module, names, line in imports(os.path.join(PACKAGE, path))
        if module == "tfcore.models"
        or module.startswith("tfcore.models.")
        or (module == "tfcore" and "models" in names)
    ]
    assert not bad, "must not import tfcore.models:\n" + "\n".join(bad)


# -- the registry itself


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are dropped afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_duplicate_model_type_and_task_raises(scratch_registry):
    class ForgotModelTypes(models.BertModel):  # inherits model_types = ("bert",)
        pass

    with pytest.raises(
        tfcore.TfcoreValueError,
        match="model_type 'bert' for task 'base' is already registered by tfcore.models.bert.BertModel",
    ):
        registry.register("base")(ForgotModelTypes)
    assert registry.lookup("bert", "base") is models.BertModel

    class NewType(models.BertModel):
        model_types = ("bert", "tiny-bert")  # one pair taken: nothing is filed

    with pytest.raises(tfcore.TfcoreValueError, match="already registered"):
        registry.register("base")(NewType)
    assert "tiny-bert" not in registry.model_types("base")
    NewType.model_types = ("tiny-bert",)
    assert registry.register("base")(NewType) is NewType
    assert registry.lookup("tiny-bert", "base") is NewType
    assert registry.tasks_for("tiny-bert") == ("base",)


def test_register_rejects_unknown_tasks_and_classes_without_model_types(scratch_registry):
    with pytest.raises(tfcore.TfcoreValueError, match="unknown task 'causal_lm'; tasks are base, causal-lm"):
        registry.register("causal_lm")

    class NoTypes(models.PreTrainedModel):
        pass

    with pytest.raises(tfcore.TfcoreValueError, match="NoTypes has no model_types"):
        registry.register("base")(NoTypes)


# The classes the Auto classes loaded before the registry existed (loading.py's tables), by task.
AUTO = {
    ("AutoModel", "base"): {
        "bert": "BertModel",
        "roberta": "RobertaModel",
        "xlm-roberta": "XLMRobertaModel",
        "distilbert": "DistilBertModel",
        "vit": "ViTModel",
        "deit": "DeiTModel",
        "dinov2": "Dinov2Model",
        "dinov2_with_registers": "Dinov2WithRegistersModel",
        "gpt2": "GPT2Model",
        "bloom": "BloomModel",
        "llama": "LlamaModel",  # base decoders since issue 23 (composition: LMs hold them)
        "mistral": "MistralModel",
        "opt": "OPTModel",
        "longformer": "LongformerModel",
        "big_bird": "BigBirdModel",
        "t5": "T5Model",
        "swin": "SwinModel",
    },
    ("AutoModelForCausalLM", "causal-lm"): {
        "gpt2": "GPT2LMHeadModel",
        "llama": "LlamaForCausalLM",
        "mistral": "MistralForCausalLM",
        "opt": "OPTForCausalLM",
        "bloom": "BloomForCausalLM",
    },
    ("AutoModelForSeq2SeqLM", "seq2seq-lm"): {"t5": "T5ForConditionalGeneration"},
}
NOUNS = {"base": "model", "causal-lm": "causal LM", "seq2seq-lm": "sequence-to-sequence LM"}


@pytest.mark.parametrize("auto, task", sorted(AUTO))
def test_lookup_of_an_unknown_model_type_lists_the_supported_ones(auto, task):
    supported = registry.model_types(task)
    assert set(AUTO[auto, task]) <= set(supported)
    for mt in ("hyena", None, 5, ["bert"]):
        want = f"ckpt: model_type {mt!r} is not a supported {NOUNS[task]}; tfcore supports {', '.join(supported)}"
        with pytest.raises(tfcore.CheckpointError, match=f"^{re.escape(want)}$"):
            registry.lookup(mt, task, source="ckpt")


@pytest.mark.parametrize("auto, task", sorted(AUTO))
def test_auto_model_dispatch_is_unchanged(auto, task, tmp_path, monkeypatch):
    loaded = []
    for cls in registry.classes():
        monkeypatch.setattr(
            cls,
            "from_pretrained",
            classmethod(
                lambda cls, directory, dtype="float32", threads=None: loaded.append(
                    (cls.__name__, dtype, threads)
                )
            ),
        )
    for model_type, name in AUTO[auto, task].items():
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        getattr(tfcore, auto).from_pretrained(tmp_path, dtype="bf16", threads=3)
        assert loaded.pop() == (name, "bf16", 3), f"{auto} loads {model_type!r} with the wrong class"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert-generation"}))
    want = (
        f"{tmp_path}: model_type 'bert-generation' is not a supported {NOUNS[task]}; tfcore supports "
        f"{', '.join(registry.model_types(task))}"
    )
    with pytest.raises(tfcore.CheckpointError, match=f"^{re.escape(want)}$"):
        getattr(tfcore, auto).from_pretrained(tmp_path)


CSRC = Path(ROOT) / "csrc"

# ==== C side: csrc/ and tfcore/_C.pyi ====================================================

# ---- includes and layers

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
                bad.append(f'{rel} includes "{name}" ({folder}/ may include {", ".join(ALLOWED[folder])})')
            if folder == "kernels" and kind == "<" and name.startswith(FORBIDDEN_SYSTEM):
                bad.append(f"{rel} includes <{name}>: kernels are pure C (no Python, NumPy or oneDNN)")
    return bad


def test_csrc_has_only_the_four_roles():
    loose = sorted(p.name for p in CSRC.iterdir() if p.is_file() and p.name not in ("tfcore.h", "registry.h"))
    dirs = sorted(p.name for p in CSRC.iterdir() if p.is_dir())
    assert loose == [], (
        f"csrc/ holds only tfcore.h and registry.h at its top; move {loose} into a role folder"
    )
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


# ---- the registry

X_TYPE = re.compile(r"X\((\w+),\s*(\w+),\s*(\w+)\)")
X_FUNC = re.compile(r"X\((\w+),\s*(\w+)\)")
# Types that share a file, with the reason; every other type lives in layers/<snake name>.c.
SHARED_FILES = {  # type pairs over one implementation
    "LayerNorm": "norm",
    "RMSNorm": "norm",
    "Conv1d": "conv",
    "Conv2d": "conv",
}
# layers/ files that are a part of a type rather than a type, with the reason.
LAYER_PARTS = {
    "linear_gemv": "Linear's few-row (decoding) GEMV path, called by Linear only",
    "linear_int4": "Linear's int4 dtype (4-bit weights, Linear.from_int4), called by Linear only",
}


def c_registry():
    text = (CSRC / "registry.h").read_text()
    types_block = text[text.index("#define TF_TYPES(X)") : text.index("#define TF_FUNCTIONS(X)")]
    funcs_block = text[text.index("#define TF_FUNCTIONS(X)") :]
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
            bad.append(
                f"layers/{p.name} implements no type of registry.h (a layer file is named after its type)"
            )
    for p in sorted((CSRC / "functions").glob("*.c")):
        if p.stem not in {f for _, f in funcs}:
            bad.append(f"functions/{p.name} has no function table in registry.h")
    return bad


def test_registry_names_every_type_and_function_file():
    types, funcs = c_registry()
    assert len(types) >= 10 and len(funcs) >= 9  # the parse found the lists
    bad = registry_problems(types, funcs)
    assert not bad, "\n".join(bad)


def test_registry_check_catches_a_misnamed_type():
    types, funcs = c_registry()
    bad = registry_problems(types + [("WindowAttention", "tf_window_attention_spec", "swin_window")], funcs)
    assert any("layers/window_attention.c" in b for b in bad), bad


# ---- the stub and exports

# Names of tfcore._C that are not re-exported, with the reason.
INTERNAL = {
    "_set_reference_kernels": "tests force the plain reference kernels",
    "_set_thread_override": "tfcore.threads() is the public form",
    "_set_isa": "tests run each kernel at every level; users set TFCORE_ISA",
    "_set_weight_cache": "tfcore.set_weight_cache checks and creates the directory first",
    "_get_weight_cache": "tfcore.get_weight_cache",
    "config": "tfcore.show_config() prints it",
    "bfloat16_to_float32": "checkpoint loading (tfcore.safetensors)",
    "float32_to_bfloat16": "tfcore convert --dtype bfloat16",
}


def stub_names() -> set:
    tree = ast.parse((Path(PACKAGE) / "_C.pyi").read_text())
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

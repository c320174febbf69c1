"""The layout rules of notes/layout.md (section 3), checked cheaply so the tree keeps showing
the architecture: which module may import which, and that each fact (a family, a model
class, its model_type) is stated in one place. Grouped by side; each section says which
rule it enforces."""
from __future__ import annotations

import ast
import json
import os
import re

import pytest

import tfcore
from tfcore import models
from tfcore.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tfcore")
MODELS = os.path.join(PACKAGE, "models")


# ==== Python side: tfcore/models/ and the modules around it ===============================

# What a family file may import from tfcore.models besides public classes of other families.
SHARED = {"base", "encoder", "decoder", "vision", "registry"}


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
    assert not unlisted, f"registered but not in tfcore.models.__all__ (add them to their family's __all__): {unlisted}"
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
                bad += [f"tfcore/models/{name}.py:{line}: {n} from {module}" for n in names if n.startswith("_")]
                if not names and module.split(".")[-1].startswith("_"):
                    bad.append(f"tfcore/models/{name}.py:{line}: module {module}")
    assert not bad, "family files import private names of other families (move them to a shared module):\n" + \
        "\n".join(bad)


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
                bad += [f"{where}: {n} is not a public class of {other} (its __all__)" for n in names
                        if n not in exported]
    assert not bad, "family files may import only " + ", ".join(sorted(SHARED)) + \
        " and the public classes of other families:\n" + "\n".join(bad)


# -- dependencies point one way: the runtime and the generation loop know no model family

@pytest.mark.parametrize("path", ["generation.py", "_runtime.py"])
def test_module_does_not_import_tfcore_models(path):
    bad = [f"tfcore/{path}:{line}: {module}" for module, names, line in imports(os.path.join(PACKAGE, path))
           if module == "tfcore.models" or module.startswith("tfcore.models.")
           or (module == "tfcore" and "models" in names)]
    assert not bad, "must not import tfcore.models:\n" + "\n".join(bad)


# -- the registry itself

@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are dropped afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_duplicate_model_type_and_task_raises(scratch_registry):
    class ForgotModelTypes(models.BertModel):  # inherits model_types = ("bert",)
        pass

    with pytest.raises(tfcore.TfcoreValueError, match="model_type 'bert' for task 'base' is already registered by "
                                                      "tfcore.models.bert.BertModel"):
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
        "bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
        "distilbert": "DistilBertModel", "vit": "ViTModel", "deit": "DeiTModel", "dinov2": "Dinov2Model",
        "dinov2_with_registers": "Dinov2WithRegistersModel", "gpt2": "GPT2Model", "bloom": "BloomModel",
        "longformer": "LongformerModel", "big_bird": "BigBirdModel", "t5": "T5Model", "swin": "SwinModel"},
    ("AutoModelForCausalLM", "causal-lm"): {
        "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
        "opt": "OPTForCausalLM", "bloom": "BloomForCausalLM"},
    ("AutoModelForSeq2SeqLM", "seq2seq-lm"): {"t5": "T5ForConditionalGeneration"},
}
NOUNS = {"base": "model", "causal-lm": "causal LM", "seq2seq-lm": "sequence-to-sequence LM"}


@pytest.mark.parametrize("auto, task", sorted(AUTO))
def test_lookup_of_an_unknown_model_type_lists_the_supported_ones(auto, task):
    supported = registry.model_types(task)
    assert set(AUTO[auto, task]) <= set(supported)
    for mt in ("mamba", None, 5, ["bert"]):
        want = f"ckpt: model_type {mt!r} is not a supported {NOUNS[task]}; tfcore supports {', '.join(supported)}"
        with pytest.raises(tfcore.CheckpointError, match=f"^{re.escape(want)}$"):
            registry.lookup(mt, task, source="ckpt")


@pytest.mark.parametrize("auto, task", sorted(AUTO))
def test_auto_model_dispatch_is_unchanged(auto, task, tmp_path, monkeypatch):
    loaded = []
    for cls in registry.classes():
        monkeypatch.setattr(cls, "from_pretrained", classmethod(
            lambda cls, directory, dtype="float32", threads=None: loaded.append((cls.__name__, dtype, threads))))
    for model_type, name in AUTO[auto, task].items():
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        getattr(tfcore, auto).from_pretrained(tmp_path, dtype="bf16", threads=3)
        assert loaded.pop() == (name, "bf16", 3), f"{auto} loads {model_type!r} with the wrong class"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert-generation"}))
    want = (f"{tmp_path}: model_type 'bert-generation' is not a supported {NOUNS[task]}; tfcore supports "
            f"{', '.join(registry.model_types(task))}")
    with pytest.raises(tfcore.CheckpointError, match=f"^{re.escape(want)}$"):
        getattr(tfcore, auto).from_pretrained(tmp_path)


# ==== C side: csrc/ ======================================================================
# (rules 1, 2 and 5 of notes/layout.md section 3 arrive with the csrc/ restructuring)

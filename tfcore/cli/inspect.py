"""Checkpoints: what is in one (inspect) and re-saving it in another precision (convert)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter


def _checkpoint(path):
    from ..safetensors import Checkpoint, SafetensorsFile
    from ..torch_bin import TorchBinFile

    if os.path.isdir(path):
        return Checkpoint(path)
    if str(path).endswith((".bin", ".pt", ".pth")):
        return TorchBinFile(path)
    return SafetensorsFile(path)


# weight files convert replaces with DEST/model.safetensors (the rest of the directory is copied)
_WEIGHT_FILES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")


def _mib(n):
    return f"{n / 2**20:,.1f} MiB"


class Inspect:
    """Print a checkpoint's architecture (from config.json), parameter count, tensor dtypes,
    and the memory tfcore needs for it in each precision."""

    NAME, HELP = "inspect", "print a checkpoint's architecture, parameters, dtypes and memory"
    KEYS = (
        "model_type",
        "architectures",
        "hidden_size",
        "n_embd",
        "num_hidden_layers",
        "n_layer",
        "num_attention_heads",
        "n_head",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "n_positions",
        "image_size",
        "patch_size",
        "torch_dtype",
    )

    @staticmethod
    def add_arguments(p):
        p.add_argument("path", help="model directory, .safetensors file or PyTorch .bin file")

    @classmethod
    def run(cls, args):
        import numpy as np

        ckpt = _checkpoint(args.path)
        cfg_path = os.path.join(args.path, "config.json")
        model_type = None
        if os.path.isdir(args.path) and os.path.exists(cfg_path):
            from ..config import Config

            cfg = Config.from_dir(args.path)
            model_type = cfg.get("model_type")
            for k in cls.KEYS:
                if cfg.get(k) is not None:
                    print(f"{k:26s}{cfg.get(k)}")
        infos = [ckpt.info(k) for k in ckpt.keys()]
        params = sum(int(np.prod(i.shape)) for i in infos)
        matrices = sum(int(np.prod(i.shape)) for i in infos if len(i.shape) == 2)
        print(f"{'tensors':26s}{len(infos)}")
        print(f"{'parameters':26s}{params:,} ({params / 1e6:.1f}M; in 2-D matrices {matrices / 1e6:.1f}M)")
        counts = Counter(i.dtype for i in infos)
        print(f"{'stored dtypes':26s}" + ", ".join(f"{d} x{n}" for d, n in counts.most_common()))
        stored = sum(i.end - i.begin for i in infos)
        print(f"{'stored size':26s}{_mib(stored)}")
        rest = (params - matrices) * 4
        print(
            f"{'tfcore memory (approx.)':26s}float32 {_mib(params * 4)}, bfloat16 {_mib(matrices * 2 + rest)}, "
            f"int8 {_mib(matrices + rest)} (projection matrices in that precision, the rest float32)"
        )
        if model_type is None:
            return 0
        from ..models import registry

        tasks = registry.tasks_for(model_type)
        if tasks:
            print(
                f"{'tfcore runs it as':26s}"
                + ", ".join(registry.lookup(model_type, t).__name__ for t in tasks)
            )
            return 0
        supported = sorted({m for t in registry.TASKS for m in registry.model_types(t)})
        print(
            f"tfcore cannot run model_type {model_type!r}: no tfcore class for it. Supported model "
            f"types: {', '.join(supported)}",
            file=sys.stderr,
        )
        return 1


class Convert:
    """Re-save a checkpoint directory as safetensors: PyTorch pytorch_model.bin checkpoints
    (read without torch and without running code from them) become DEST/model.safetensors,
    and --dtype re-saves the floating-point tensors in another precision (bfloat16 halves the
    files; tfcore loads bf16 files without a float32 detour). Everything else is copied:
    config.json, tokenizer files and a sentence-transformers model's modules.json,
    sentence_bert_config.json and module folders (1_Pooling/, 2_Normalize/, ...), so the
    result loads in transformers and sentence-transformers too. A CTranslate2 Whisper
    directory (model.bin, as faster-whisper uses) becomes a Hugging Face Whisper checkpoint
    (tfcore.ctranslate2_whisper documents the name mapping)."""

    NAME, HELP = (
        "convert",
        "re-save a checkpoint directory (or a CTranslate2 Whisper one) as safetensors, optionally in another dtype",
    )

    @staticmethod
    def add_arguments(p):
        p.add_argument("source", help="model directory")
        p.add_argument("dest", help="new directory (must not exist)")
        p.add_argument(
            "--dtype",
            choices=["float32", "float16", "bfloat16"],
            help="precision of the floating-point tensors (default: as stored)",
        )

    @staticmethod
    def run(args):
        import numpy as np

        from .. import _C
        from .._progress import progress
        from ..safetensors import save_file

        if os.path.exists(args.dest):
            raise _C.TfcoreValueError(f"{args.dest} exists; convert writes a new directory")
        from ..ctranslate2_whisper import convert_ctranslate2_whisper, is_ctranslate2_directory

        if os.path.isdir(args.source) and is_ctranslate2_directory(args.source):
            n = convert_ctranslate2_whisper(args.source, args.dest, dtype=args.dtype)
            print(
                f"wrote {n} tensors and the Hugging Face configs of a CTranslate2 Whisper model to {args.dest}"
            )
            return 0
        ckpt = _checkpoint(args.source)
        if str(args.source).endswith(".pth") and os.path.isfile(args.source):
            return _convert_rwkv6_pth(ckpt, args)
        if not os.path.isdir(args.source):
            raise _C.TfcoreValueError(
                f"{args.source}: convert takes a model directory (or an RWKV-6 .pth of the rwkv package)"
            )
        tensors, bf16 = {}, []
        for name in progress(ckpt.keys(), desc="converting", unit="tensor"):
            info = ckpt.info(name)
            if info.dtype not in ("F64", "F32", "F16", "BF16") or args.dtype is None:
                tensors[name] = np.array(ckpt.raw(name))
                if info.dtype == "BF16":
                    bf16.append(name)
                continue
            a = ckpt.float32(name)
            if args.dtype == "float32":
                tensors[name] = np.ascontiguousarray(a, np.float32)
            elif args.dtype == "float16":
                tensors[name] = a.astype(np.float16)
            else:
                tensors[name] = _C.float32_to_bfloat16(np.ascontiguousarray(a, np.float32))
                bf16.append(name)
        os.makedirs(args.dest)
        # everything but the weights: configs, tokenizer files, and the sentence-transformers
        # layout (modules.json, sentence_bert_config.json, 1_Pooling/, 2_Normalize/, ...) so the
        # result loads in sentence-transformers too; hidden folders (.cache, .git) are left out
        for f in sorted(os.listdir(args.source)):
            src = os.path.join(args.source, f)
            if os.path.isdir(src):
                if not f.startswith("."):
                    shutil.copytree(src, os.path.join(args.dest, f))
            elif not f.endswith(_WEIGHT_FILES) and os.path.isfile(src):
                shutil.copy2(src, args.dest)
        cfg = os.path.join(args.dest, "config.json")
        if os.path.exists(cfg) and args.dtype is not None:
            with open(cfg) as f:
                values = json.load(f)
            values["torch_dtype"] = args.dtype
            with open(cfg, "w") as f:
                json.dump(values, f, indent=2)
        save_file(tensors, os.path.join(args.dest, "model.safetensors"), metadata={"format": "pt"}, bf16=bf16)
        print(
            f"wrote {len(tensors)} tensors ({len(bf16) + sum(t.dtype.kind == 'f' for t in tensors.values())} "
            f"floating-point in {args.dtype or 'their stored dtypes'}) to {args.dest}"
        )
        return 0


def _convert_rwkv6_pth(ckpt, args):
    """An RWKV-6 .pth of the ``rwkv`` package -> DEST/model.safetensors with fla's rwkv6 names
    and DEST/config.json (tfcore/_rwkv6_convert.py); read without torch."""
    import numpy as np

    from .. import _C
    from .._rwkv6_convert import convert_rwkv6, is_rwkv6_pth
    from ..safetensors import save_file

    keys = list(ckpt.keys())
    if not is_rwkv6_pth(keys):
        raise _C.TfcoreValueError(
            f"{args.source}: a .pth convert takes the rwkv package's RWKV-6 (x060) layout "
            "(emb.weight, blocks.0.att.time_maa_x); for other checkpoints give their directory"
        )
    tensors, config = convert_rwkv6(lambda n: np.asarray(ckpt.float32(n), np.float32), keys)
    bf16 = []
    if args.dtype == "float16":
        tensors = {k: v.astype(np.float16) for k, v in tensors.items()}
    elif args.dtype == "bfloat16":
        tensors = {k: _C.float32_to_bfloat16(v) for k, v in tensors.items()}
        bf16 = list(tensors)
    if args.dtype is not None:
        config["torch_dtype"] = args.dtype
    os.makedirs(args.dest)
    with open(os.path.join(args.dest, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(tensors, os.path.join(args.dest, "model.safetensors"), metadata={"format": "pt"}, bf16=bf16)
    print(
        f"wrote {len(tensors)} tensors of an RWKV-6 model ({config['num_hidden_layers']} layers) to {args.dest}"
    )
    return 0

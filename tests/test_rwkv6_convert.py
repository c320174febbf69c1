"""``tfcore convert model.pth DEST`` on the ``rwkv`` package's RWKV-6 (x060) layout: a tiny
random .pth written here with torch runs in the rwkv package's own pure-PyTorch CPU path
(``RWKV(path, "cpu fp32")``, the reference the RWKV authors maintain); the converted fla-named
checkpoint loads as Rwkv6ForCausalLM and its logits (full forward and token-by-token with a
RecurrentState) equal the package's and the float64 NumPy reference model's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import package_parent
from reference.rwkv6 import rwkv6_logits

import tfcore

C, H, L, V, F, R, RG = 45, 3, 3, 61, 96, 4, 8


def tiny_pth(path, rng):
    import torch

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    n = lambda *s, fan=None: t(rng.standard_normal(s) * (fan or s[-1]) ** -0.5)  # noqa: E731
    u = lambda *s: t(rng.uniform(0, 1, s))  # noqa: E731
    sd = {"emb.weight": t(rng.standard_normal((V, C))), "head.weight": n(V, C)}
    sd |= {"ln_out.weight": 1 + 0.1 * n(C, fan=1), "ln_out.bias": 0.1 * n(C, fan=1)}
    for i in range(L):
        b = f"blocks.{i}."
        for ln in ("ln0", "ln1", "ln2") if i == 0 else ("ln1", "ln2"):
            sd |= {b + ln + ".weight": 1 + 0.1 * n(C, fan=1), b + ln + ".bias": 0.1 * n(C, fan=1)}
        a = b + "att."
        sd |= {a + f"time_maa_{x}": u(1, 1, C) for x in "xwkvrg"}
        sd |= {
            a + "time_maa_w1": n(C, 5 * R, fan=C),
            a + "time_maa_w2": n(5, R, C, fan=R),
            a + "time_decay": t(rng.uniform(-6, 3, (1, 1, C))),
            a + "time_decay_w1": n(C, RG, fan=C),
            a + "time_decay_w2": n(RG, C, fan=RG),
            a + "time_faaaa": n(H, C // H, fan=1),
            a + "receptance.weight": n(C, C),
            a + "key.weight": n(C, C),
            a + "value.weight": n(C, C),
            a + "gate.weight": n(C, C),
            a + "output.weight": n(C, C),
            a + "ln_x.weight": 1 + 0.1 * n(C, fan=1),
            a + "ln_x.bias": 0.1 * n(C, fan=1),
        }
        f = b + "ffn."
        sd |= {f + "time_maa_k": u(1, 1, C), f + "time_maa_r": u(1, 1, C)}
        sd |= {f + "key.weight": n(F, C), f + "receptance.weight": n(C, C), f + "value.weight": n(C, F)}
    torch.save(sd, str(path))
    return {k: v.numpy() for k, v in sd.items()}


def convert(src, dest, *extra):
    env = {**os.environ, "TFCORE_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "tfcore", "convert", str(src), str(dest), *extra],
        capture_output=True,
        text=True,
        cwd=package_parent(),
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("rwkv6pth")
    tiny_pth(d / "tiny.pth", np.random.default_rng(0))
    r = convert(d / "tiny.pth", d / "fla")
    assert r.returncode == 0, r.stderr
    return d


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_converted_pth_equals_the_rwkv_package(converted):
    pytest.importorskip("rwkv")
    import torch

    os.environ.setdefault("RWKV_JIT_ON", "0")
    from rwkv.model import RWKV

    ids = np.random.default_rng(1).integers(0, V, 40)
    ref = RWKV(str(converted / "tiny.pth"), strategy="cpu fp32")
    with torch.no_grad():
        want, _ = ref.forward(ids.tolist(), None, full_output=True)
    want = want.double().numpy()
    model = tfcore.AutoModelForCausalLM.from_pretrained(converted / "fla")
    assert type(model).__name__ == "Rwkv6ForCausalLM"
    got = model(ids[None]).logits[0]
    # both float32 (the package's fp32 path), 3 blocks of GEMMs over <= 96 terms: 1e-4
    assert rel(got, want) < 1e-4
    # and the float64 reference model reads the converted names the same way
    from safetensors.numpy import load_file

    cfg = json.loads((converted / "fla" / "config.json").read_text())
    w = load_file(str(converted / "fla" / "model.safetensors"))
    assert rel(rwkv6_logits(cfg, w, ids[None])[0], want) < 1e-4
    # token by token through both recurrent states
    state, ref_state, mine, theirs = model.new_cache(1), None, [], []
    for tok in ids[:12]:
        mine.append(model(np.array([[tok]]), past_key_values=state).logits[0, 0])
        with torch.no_grad():
            out, ref_state = ref.forward([int(tok)], ref_state)
        theirs.append(out.double().numpy())
    assert rel(np.array(mine), np.array(theirs)) < 1e-4


def test_convert_refuses_other_pth(tmp_path):
    import torch

    torch.save({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.pth"))
    r = convert(tmp_path / "other.pth", tmp_path / "out")
    assert r.returncode != 0 and "RWKV-6" in r.stderr
    assert not (tmp_path / "out").exists()

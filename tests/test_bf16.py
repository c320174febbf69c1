"""bfloat16 weights: Linear against a float64 reference of the same bf16 rounding, and every
family loaded with dtype='bfloat16' against Hugging Face in float32 on the same (bf16-valued)
weights, from float32 and from bfloat16 checkpoints."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from reference import dense
from tiny_models import causal_lms

import tfcore

# every CPU runs bf16: natively with AVX512_BF16, elsewhere as bf16 weight rows widened to
# float32 (the CI run with ONEDNN_MAX_CPU_ISA=AVX2 covers that path); both must give the same
# products of bf16-rounded operands


def bf16_round(a):
    """float32 values rounded to the nearest bfloat16 (ties to even), as float64."""
    return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).double().numpy()


def bf16_bits(a):
    return (
        torch.from_numpy(np.asarray(a, np.float32))
        .to(torch.bfloat16)
        .view(torch.int16)
        .numpy()
        .view(np.uint16)
    )


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("M", [1, 3, 4, 5, 97])
@pytest.mark.parametrize("act", [None, "gelu_tanh", "silu"])
def test_linear_is_the_exact_product_of_bf16_rounded_operands(rng, M, act):
    K, N = 131, 197
    W, b, x, r = rand(rng, N, K, scale=K**-0.5), rand(rng, N), rand(rng, M, K), rand(rng, M, N)
    lin = tfcore.Linear(W, b, act, dtype="bfloat16")
    assert lin.dtype == "bfloat16" and "bfloat16" in repr(lin)
    native = tfcore.supported_dtypes()["bfloat16"].startswith("native")
    assert lin.implementation.startswith("tfcore bf16") != native, lin.implementation
    # the products are exact in f32 and summed in f32: only accumulation order differs
    ref = dense.linear(bf16_round(x), bf16_round(W), b, act)
    assert np.abs(lin(x) - ref).max() < 2e-5
    assert np.abs(lin(x, r) - (ref + r)).max() < 2e-5
    acc = r.copy()
    lin(x, acc, out=acc)
    assert np.abs(acc - (ref + r)).max() < 2e-5
    # and against float32 weights the error is bf16's (8 bits of mantissa)
    assert np.abs(lin(x) - dense.linear(x, W, b, act)).max() < 3e-2
    np.testing.assert_array_equal(lin.weight, bf16_round(W).astype(np.float32))


def test_linear_takes_bf16_bits_without_float32_copy(rng):
    W, x = rand(rng, 64, 48), rand(rng, 5, 48)
    from_bits = tfcore.Linear(bf16_bits(W), dtype="bfloat16")
    from_f32 = tfcore.Linear(W, dtype="bfloat16")
    np.testing.assert_array_equal(from_bits(x), from_f32(x))
    np.testing.assert_array_equal(
        tfcore.Linear(bf16_bits(W).T.copy(), transposed=True, dtype="bfloat16")(x), from_f32(x)
    )


def test_bad_dtypes():
    W = np.ones((4, 3), np.float32)
    with pytest.raises(
        tfcore.TfcoreValueError, match="dtype must be 'float32', 'bfloat16' or 'int8', got 'int3'"
    ):
        tfcore.Linear(W, dtype="int3")
    with pytest.raises(tfcore.TfcoreTypeError, match="dtype must be a string"):
        tfcore.Linear(W, dtype=16)
    with pytest.raises(tfcore.TfcoreTypeError, match="weight must have dtype float32"):
        tfcore.Linear(W.view(np.uint32).astype(np.uint16))  # bits only mean bf16 with dtype='bfloat16'
    bits = bf16_bits(W)
    bits[1, 2] = 0x7FC0  # NaN
    with pytest.raises(tfcore.TfcoreValueError, match="NaN or Inf"):
        tfcore.Linear(bits, dtype="bfloat16")
    with pytest.raises(tfcore.TfcoreTypeError, match="all uint16 bfloat16 bits"):
        tfcore.MultiHeadAttention(
            4,
            2,
            q_weight=bf16_bits(np.ones((4, 4))),
            k_weight=np.ones((4, 4), np.float32),
            v_weight=np.ones((4, 4), np.float32),
            o_weight=np.ones((4, 4), np.float32),
            dtype="bfloat16",
        )


def save_both(model, path):
    """The model as float32 and as bfloat16 checkpoints, and HF in float32 with the
    bf16-rounded weights (the reference for a bf16 run)."""
    model.eval().save_pretrained(path / "f32")
    model.to(torch.bfloat16).save_pretrained(path / "bf16")
    return type(model).from_pretrained(path / "bf16", torch_dtype=torch.float32).eval()


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "opt"])
def test_causal_lm_logits_and_decoding(rng, tmp_path, name):
    torch.manual_seed(0)
    ref = save_both(causal_lms()[name](), tmp_path)
    ids = rng.integers(3, 97, size=(2, 23))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).logits.numpy()
    for ckpt in ("f32", "bf16"):
        model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / ckpt, dtype="bfloat16")
        assert model.dtype == "bfloat16" and model.lm_head.dtype == "bfloat16"
        got = model(ids).logits
        # rows rounded to bf16 before each GEMM: ~3 significant digits on O(1) logits
        assert np.abs(got - want).max() < 2e-2 * np.abs(want).max()
    # cached decoding (few-row GEMMs) equals the full forward of the same bf16 model
    out = model(ids[:, :20], use_cache=True)
    cache = out.past_key_values
    for t in range(20, 23):
        step = model(ids[:, t : t + 1], past_key_values=cache, use_cache=True)
        cache = step.past_key_values
        assert np.abs(step.logits[:, -1] - got[:, t]).max() < 1e-4
    # pickles by path and dtype
    assert pickle.loads(pickle.dumps(model)).dtype == "bfloat16"


def test_encoders_and_vision(rng, tmp_path):
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    bert = save_both(
        BertModel(
            BertConfig(
                vocab_size=101,
                hidden_size=60,
                num_hidden_layers=2,
                num_attention_heads=5,
                intermediate_size=97,
                max_position_embeddings=64,
            )
        ),
        tmp_path / "bert",
    )
    ids = rng.integers(3, 101, size=(3, 31))
    mask = (np.arange(31)[None] < np.array([[31], [7], [1]])).astype(np.int64)
    with torch.no_grad():
        want = bert(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    got = tfcore.AutoModel.from_pretrained(tmp_path / "bert" / "bf16", dtype="bf16")(ids, attention_mask=mask)
    real = mask.astype(bool)
    assert np.abs(got.last_hidden_state[real] - want[real]).max() < 3e-2  # LayerNorm outputs are O(1)

    vit = save_both(
        ViTModel(
            ViTConfig(
                image_size=32,
                patch_size=8,
                hidden_size=60,
                num_hidden_layers=2,
                num_attention_heads=5,
                intermediate_size=97,
            )
        ),
        tmp_path / "vit",
    )
    px = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = vit(torch.from_numpy(px)).last_hidden_state.numpy()
    got = tfcore.AutoModel.from_pretrained(tmp_path / "vit" / "f32", dtype="bfloat16")(px).last_hidden_state
    assert np.abs(got - want).max() < 3e-2


def test_model_dtype_errors(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(
        GPT2Config(vocab_size=31, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    ).save_pretrained(tmp_path)
    for bad in ("int3", "float16", None):
        with pytest.raises(tfcore.TfcoreValueError, match="dtype must be one of"):
            tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=bad)
    assert tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == "bfloat16"


@pytest.mark.parametrize("N", [1, 16, 17, 65, 200])
@pytest.mark.parametrize("K", [5, 32, 97])
def test_few_row_kernel_narrow_panels_and_odd_k(rng, N, K):
    """Rows <= 4 take tfcore's AVX512_BF16 kernel, more rows oneDNN's: the same products."""
    W, b, x = rand(rng, N, K, scale=K**-0.5), rand(rng, N), rand(rng, 6, K)
    lin = tfcore.Linear(W, b, "silu", dtype="bfloat16")
    ref = dense.linear(bf16_round(x), bf16_round(W), b, "silu")
    for M in range(1, 7):
        assert np.abs(lin(x[:M]) - ref[:M]).max() < 2e-5, M
    res = rand(rng, 3, N)
    acc = res.copy()
    lin(x[:3], acc, out=acc)
    assert np.abs(acc - (ref[:3] + res)).max() < 2e-5


def test_float32_to_bfloat16_equals_torch():
    """The converter `tfcore convert --dtype bfloat16` uses: torch's rounding (nearest even),
    Inf and NaN kept, shape kept; bfloat16_to_float32 is its exact inverse on bf16 values."""
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-40, 38, 10_000),
            np.array(
                [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, 3.4028235e38, 1.00390625, 1.01171875],
                np.float32,
            ),
        ]
    ).astype(np.float32)
    got = tfcore._C.float32_to_bfloat16(x.reshape(2, -1)).reshape(-1)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(got[finite], want[finite])
    back = tfcore._C.bfloat16_to_float32(got)
    assert np.isnan(back[np.isnan(x)]).all() and (back[np.isinf(x)] == x[np.isinf(x)]).all()
    np.testing.assert_array_equal(tfcore._C.float32_to_bfloat16(back), got)
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        tfcore._C.float32_to_bfloat16(x.astype(np.float64))
    with pytest.raises(tfcore.TfcoreValueError, match="C-contiguous"):
        tfcore._C.float32_to_bfloat16(x[::2])

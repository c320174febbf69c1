"""Recurrent and mixture-of-experts decoding (issue 17), tfcore vs Hugging Face on torch, same
process, same threads, alternating runs, after checking that both produce the same tokens.
Table-driven: SECTIONS lists one function per model family, each returning its rows.

Mamba (~130M, mamba-130m's shape, random weights): decode B=1 after a prompt of 128 tokens and
after longer contexts (tfcore's step reads a fixed-size RecurrentState, so tokens/s should stay
flat; HF's decode is timed after the 128-token prompt, its state is the same size), achieved
GB/s = (weights + state) bytes per step x steps/s against the read bandwidth measured in the
run; prefill of 2k tokens vs HF's sequential torch scan.

Mixtral-shaped (8 experts, top-2), greedy B=1:

Decoding is memory-bound and a MoE step reads only the router and the chosen experts: the
bytes read per step are attention + router + top_k experts per layer + LM head, reported as
achieved GB/s against the read bandwidth measured in the same run. Also a 512-token prefill
(every expert runs one GEMM over the tokens routed to it).

Jamba-shaped (small: 8 layers, one attention layer per 8 at offset 4, 8 experts top-2 every
other layer, Mamba layers elsewhere, as Jamba's proportions), greedy B=1 vs HF's torch path,
tfcore's decode B=1 after 128 and 8k tokens, and a 2k prefill vs HF.

RWKV-4 (rwkv-4-169m's shape, vs HF) and RWKV-6 (169M-class, vs the rwkv package's pure-torch
CPU path): decode B=1 at contexts 128 .. 8k and a 2k prefill, from benchmarks/bench_rwkv.py.

    python benchmarks/bench_recurrent.py [--quick] [--threads 2] [--avx2] [--only mamba,rwkv4,rwkv6,jamba,mixtral]

--avx2 re-runs the script with benchmarks/common.AVX2_ENV (tfcore, oneDNN and torch held to
AVX2), as users without AVX-512 run it; --only picks sections.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import hf_greedy, measured_bandwidth  # noqa: E402
from common import interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402

import tfcore  # noqa: E402

# Mixtral's proportions (intermediate = 3.5 x hidden, 8 experts, top-2, GQA 4:1) at ~1/8 width
MIXTRAL_SMALL = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1792,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    num_local_experts=8,
    num_experts_per_tok=2,
    max_position_embeddings=4096,
)


def make_mixtral(tmp):
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    ref = MixtralForCausalLM(MixtralConfig(**MIXTRAL_SMALL))
    with torch.no_grad():  # decisive routing (random init leaves the router near uniform)
        for layer in ref.model.layers:
            layer.mlp.gate.weight.mul_(40.0)
    path = os.path.join(tmp, "mixtral-small")
    ref.save_pretrained(path)
    return path


def step_bytes(model) -> int:
    """Weight bytes one decode step reads (float32): attention, the router and top_k experts
    per layer, the LM head. Experts no token chose are not read."""

    def lin(x):
        return x.in_features * x.out_features * 4 if x is not None else 0

    n = lin(model.lm_head)
    for blk in model.layers:
        moe = blk.feed_forward
        e = moe.experts[0]
        n += lin(blk.attention.qkv_proj) + lin(blk.attention.o_proj) + lin(moe.router)
        n += moe.top_k * (lin(e.up) + lin(e.gate) + lin(e.down))
    return n


MAMBA_130M = dict(
    vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, expand=2, conv_kernel=4
)


def mamba_step_bytes(model, weight_bytes: int = 4) -> int:
    """Bytes one decode step reads: every Linear of every layer (weight_bytes per weight: 4
    float32, 2 bfloat16), the conv taps, A, D, dt bias, the norms, the LM head, and the float32
    state (read and written)."""

    def lin(x):
        return x.in_features * x.out_features * weight_bytes

    n = lin(model.lm_head)
    for _, m in model.layers:
        n += sum(lin(x) for x in (m.in_x, m.in_z, m.x_proj, m.dt_proj, m.out_proj))
        n += m.conv_weight.nbytes + m.A.nbytes + m.D.nbytes + m.dt_bias.nbytes
        n += 2 * 4 * m.intermediate_size * (m.conv_kernel - 1 + m.state_size)  # state in and out
    return n


def mamba_rows(args, bandwidth, tmp):
    """Mamba-130M-shaped: decode tok/s at several contexts (tfcore) and at 128 (HF), prefill."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    ref = MambaForCausalLM(MambaConfig(**MAMBA_130M)).eval()
    with torch.no_grad():
        # HF's random init leaves B and C (x_proj's outputs) large, which makes the 24-layer
        # model chaotic: float64 and float32 logits differ by 5e-4 and rounding any one weight
        # group to bf16 moves the logits by 45-100%, so no bf16 run can agree with it. x_proj
        # x 0.3 makes it well-conditioned (float64 vs float32 5e-6, bf16 weights 5%), like a
        # trained model; the bytes and the work of a step are unchanged.
        for layer in ref.backbone.layers:
            layer.mixer.x_proj.weight.mul_(0.3)
    path = os.path.join(tmp, "mamba-130m")
    ref.save_pretrained(path)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    new_tokens, reps = (16, 1) if args.quick else (64, 3)
    contexts = (128, 1024) if args.quick else (128, 2048, 8192)
    rng = np.random.default_rng(0)
    rows = []
    prompt = rng.integers(100, 50000, size=(1, 128))
    tids = torch.from_numpy(prompt)
    with torch.inference_mode():
        a = ours.generate(prompt, max_new_tokens=new_tokens, eos_token_id=[])
        b = hf_greedy(ref, tids, torch.ones_like(tids), new_tokens).numpy()
        agree = float((a[:, 128:] == b[:, 128:]).mean())
        if agree < 1.0:
            print(f"WARNING: Mamba greedy tokens agree with HF on {100 * agree:.0f}% only")
        # HF: decode steps after a 128-token prefill, one token at a time through its cache
        out = ref(tids, use_cache=True)
        cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)

        def hf_steps():
            c = copy.deepcopy(cache)
            t = nxt
            for _ in range(new_tokens):
                t = ref(t, cache=c, use_cache=True).logits[:, -1:].argmax(-1)

        def our_steps(state0):
            def run():
                st = ours.new_cache(1)
                for i in range(ours.num_layers):
                    for name in ("conv", "ssm"):
                        st.set(i, name, state0.get(i, name))
                t = np.array([[int(nxt)]])
                for _ in range(new_tokens):
                    t = ours(t, past_key_values=st).logits[:, -1:].argmax(-1)

            return run

        nbytes = mamba_step_bytes(ours)
        for ctx in contexts:
            state = ours.new_cache(1)
            ours(rng.integers(100, 50000, size=(1, ctx)), past_key_values=state)
            fns = {"tfcore": our_steps(state)}
            if ctx == 128:
                fns["hf"] = hf_steps
            t = interleaved(fns, repeat=reps, warmup=1)
            gbs = nbytes * new_tokens / t["tfcore"] / 1e9
            rows.append(
                [
                    f"Mamba-130M shape: decode B=1 after {ctx} tokens",
                    f"{new_tokens / t['tfcore']:.1f} tok/s",
                    f"{new_tokens / t['hf']:.1f} tok/s" if "hf" in t else "-",
                    f"{t['hf'] / t['tfcore']:.2f}" if "hf" in t else "-",
                    f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
                    f"greedy {100 * agree:.0f}%" if ctx == 128 else "state: same size",
                ]
            )
        # bfloat16 weights (float32 activations and state): half the bytes of a step
        ours_bf = tfcore.AutoModelForCausalLM.from_pretrained(path, dtype="bfloat16")
        a_bf = ours_bf.generate(prompt, max_new_tokens=new_tokens, eos_token_id=[])
        agree_bf = float((a_bf[:, 128:] == b[:, 128:]).mean())
        # greedy paths part at the first near-tie that bf16 rounding flips (seen: 12% of 16
        # tokens); the check is the next-token argmax over the prompt, teacher-forced
        lf, lh = ours_bf(prompt).logits, ref(tids).logits.numpy()
        argmax_bf = float((lf.argmax(-1) == lh.argmax(-1)).mean())
        err_bf = float(np.abs(lf - lh).max() / np.abs(lh).max())
        if argmax_bf < 0.75:
            print(f"WARNING: Mamba bfloat16 next-token argmax agrees with HF on {100 * argmax_bf:.0f}% only")
        state = ours_bf.new_cache(1)
        ours_bf(prompt, past_key_values=state)

        def bf_steps():
            st = ours_bf.new_cache(1)
            for i in range(ours_bf.num_layers):
                for name in ("conv", "ssm"):
                    st.set(i, name, state.get(i, name))
            t = np.array([[int(nxt)]])
            for _ in range(new_tokens):
                t = ours_bf(t, past_key_values=st).logits[:, -1:].argmax(-1)

        t = interleaved({"tfcore": bf_steps, "hf": hf_steps}, repeat=reps, warmup=1)
        gbs = mamba_step_bytes(ours_bf, 2) * new_tokens / t["tfcore"] / 1e9
        rows.append(
            [
                "same, bfloat16 weights (HF float32): decode B=1 after 128 tokens",
                f"{new_tokens / t['tfcore']:.1f} tok/s",
                f"{new_tokens / t['hf']:.1f} tok/s",
                f"{t['hf'] / t['tfcore']:.2f}",
                f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
                f"argmax {100 * argmax_bf:.0f}%, logits {err_bf:.1e}, greedy {100 * agree_bf:.0f}%",
            ]
        )
        T = 256 if args.quick else 2048
        long_ids = rng.integers(100, 50000, size=(1, T))
        got = ours(long_ids, logits_to_keep=1).logits
        want = ref(torch.from_numpy(long_ids), logits_to_keep=1).logits.numpy()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        t = interleaved(
            {
                "tfcore": lambda: ours(long_ids, logits_to_keep=1),
                "hf": lambda: ref(torch.from_numpy(long_ids), logits_to_keep=1),
            },
            repeat=reps,
            warmup=0,
        )
    rows.append(
        [
            f"same model: prefill {T} tokens",
            f"{t['tfcore'] * 1e3:.0f} ms",
            f"{t['hf'] * 1e3:.0f} ms",
            f"{t['hf'] / t['tfcore']:.2f}",
            "-",
            f"max rel. logit diff {err:.1e}",
        ]
    )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avx2", action="store_true", help="run at AVX2 (benchmarks/common.AVX2_ENV)")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    args = ap.parse_args()
    reexec_at_avx2_if_asked()
    only = [x for x in args.only.split(",") if x]
    unknown = [x for x in only if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}: choose from {list(SECTIONS)}")
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    bandwidth = measured_bandwidth(args.threads)
    print(isa_line())
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads)\n")
    header = ["model", "tfcore", "HF", "HF/tfcore time", "tfcore GB/s (% of measured)", "agreement"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, section in SECTIONS.items():
            if not only or name in only:
                part = section(args, bandwidth, tmp)
                print_table(header, part)
                sys.stdout.flush()  # each section's rows as soon as they exist (long runs)
                rows += part
    print("\nall sections:")
    print_table(header, rows)


def mixtral_rows(args, bandwidth, tmp):
    """Mixtral-shaped MoE: decode B=1 and a prefill vs HF."""
    from transformers import MixtralForCausalLM

    new_tokens, reps, prompt = (16, 1, 32) if args.quick else (64, 3, 32)
    rows = []
    with torch.inference_mode():
        path = make_mixtral(tmp)
        ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
        ref = MixtralForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
        print(f"HF experts implementation: {ref.config._experts_implementation}")
        ids = np.random.default_rng(0).integers(100, 31900, size=(1, prompt))
        tids, tmask = torch.from_numpy(ids), torch.ones(1, prompt, dtype=torch.long)

        def run_ours():
            return ours.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])

        def run_hf():
            return hf_greedy(ref, tids, tmask, new_tokens)

        with torch.inference_mode():
            a, b = run_ours(), run_hf().numpy()
            agree = float((a[:, prompt:] == b[:, prompt:]).mean())
            if agree < 1.0:
                print(f"WARNING: greedy tokens agree with HF on {100 * agree:.0f}% only")
            t = interleaved({"tfcore": run_ours, "hf": run_hf}, repeat=reps, warmup=0)
        gbs = step_bytes(ours) * new_tokens / t["tfcore"] / 1e9
        rows.append(
            [
                "Mixtral-shaped 8x(512->1792) top-2, 4 layers: decode B=1",
                f"{new_tokens / t['tfcore']:.1f} tok/s",
                f"{new_tokens / t['hf']:.1f} tok/s",
                f"{t['hf'] / t['tfcore']:.2f}",
                f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
                f"{100 * agree:.0f}%",
            ]
        )
        T = 128 if args.quick else 512
        long_ids = np.random.default_rng(1).integers(100, 31900, size=(1, T))
        with torch.inference_mode():
            got = ours(long_ids, logits_to_keep=1).logits
            want = ref(torch.from_numpy(long_ids), logits_to_keep=1).logits.numpy()
            err = float(np.abs(got - want).max() / np.abs(want).max())
            t = interleaved(
                {
                    "tfcore": lambda: ours(long_ids, logits_to_keep=1),
                    "hf": lambda: ref(torch.from_numpy(long_ids), logits_to_keep=1),
                },
                repeat=reps,
                warmup=1,
            )
        rows.append(
            [
                f"same model: prefill {T} tokens",
                f"{t['tfcore'] * 1e3:.0f} ms",
                f"{t['hf'] * 1e3:.0f} ms",
                f"{t['hf'] / t['tfcore']:.2f}",
                "-",
                f"max rel. logit diff {err:.1e}",
            ]
        )
    return rows


JAMBA_SMALL = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1792,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    num_experts=8,
    num_experts_per_tok=2,
    expert_layer_period=2,
    expert_layer_offset=1,
    attn_layer_period=8,
    attn_layer_offset=4,
    mamba_d_state=16,
    mamba_d_conv=4,
    mamba_expand=2,
    use_mamba_kernels=False,
)


def jamba_rows(args, bandwidth, tmp):
    """Jamba-shaped hybrid: greedy decode B=1 after a 128-token prompt vs HF."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(0)
    ref = JambaForCausalLM(JambaConfig(**JAMBA_SMALL)).eval()
    with torch.no_grad():  # decisive routing, as for Mixtral
        for layer in ref.model.layers:
            if hasattr(layer.feed_forward, "router"):
                layer.feed_forward.router.weight.mul_(40.0)
    path = os.path.join(tmp, "jamba-small")
    ref.save_pretrained(path)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    new_tokens, reps, prompt = (16, 1, 128) if args.quick else (64, 3, 128)
    ids = np.random.default_rng(2).integers(100, 31900, size=(1, prompt))
    tids, tmask = torch.from_numpy(ids), torch.ones(1, prompt, dtype=torch.long)
    with torch.inference_mode():

        def run_ours():
            return ours.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])

        def run_hf():
            return hf_greedy(ref, tids, tmask, new_tokens)

        a, b = run_ours(), run_hf().numpy()
        agree = float((a[:, prompt:] == b[:, prompt:]).mean())
        if agree < 1.0:
            print(f"WARNING: Jamba greedy tokens agree with HF on {100 * agree:.0f}% only")
        t = interleaved({"tfcore": run_ours, "hf": run_hf}, repeat=reps, warmup=0)
        rows = [
            [
                f"Jamba-shaped (512 wide, 8 layers: 1 attention, 4 MoE 8x top-2): greedy {new_tokens} tokens after {prompt}",
                f"{new_tokens / t['tfcore']:.1f} tok/s",
                f"{new_tokens / t['hf']:.1f} tok/s",
                f"{t['hf'] / t['tfcore']:.2f}",
                "-",
                f"{100 * agree:.0f}%",
            ]
        ]
        # tfcore's decode steps after longer contexts: the Mamba layers' state is fixed, the
        # one attention layer's KV cache grows
        rng = np.random.default_rng(3)
        for ctx in (128, 1024) if args.quick else (128, 8192):
            cache = ours.new_cache(1, capacity=ctx + 4 * new_tokens)
            ours(rng.integers(100, 31900, size=(1, ctx)), past_key_values=cache, logits_to_keep=1)
            tok = np.array([[1234]])

            def steps(cache=cache):
                for _ in range(new_tokens):
                    ours(tok, past_key_values=cache, logits_to_keep=1)

            tt = interleaved({"tfcore": steps}, repeat=reps, warmup=1)
            rows.append(
                [
                    f"same model: tfcore decode B=1 after {ctx} tokens",
                    f"{new_tokens / tt['tfcore']:.1f} tok/s",
                    "-",
                    "-",
                    "-",
                    "1 attention layer's KV grows",
                ]
            )
        T = 256 if args.quick else 2048
        long_ids = rng.integers(100, 31900, size=(1, T))
        got = ours(long_ids, logits_to_keep=1).logits
        want = ref(torch.from_numpy(long_ids), logits_to_keep=1).logits.numpy()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        if err > 1e-3:
            print(f"WARNING: Jamba prefill logits differ from HF's by {err:.1e}")
        t = interleaved(
            {
                "tfcore": lambda: ours(long_ids, logits_to_keep=1),
                "hf": lambda: ref(torch.from_numpy(long_ids), logits_to_keep=1),
            },
            repeat=reps,
            warmup=0,
        )
        rows.append(
            [
                f"same model: prefill {T} tokens",
                f"{t['tfcore'] * 1e3:.0f} ms",
                f"{t['hf'] * 1e3:.0f} ms",
                f"{t['hf'] / t['tfcore']:.2f}",
                "-",
                f"max rel. logit diff {err:.1e}",
            ]
        )
    return rows


def rwkv4_rows(args, bandwidth, tmp):
    from bench_rwkv import rwkv4_rows as rows

    return rows(args, bandwidth, tmp, label="RWKV-4 169M shape: ")


def rwkv6_rows(args, bandwidth, tmp):
    from bench_rwkv import rwkv6_rows as rows

    return rows(args, bandwidth, tmp, label="RWKV-6 169M-class (ref: rwkv pkg): ", prefill_T=2048)


SECTIONS = {
    "mamba": mamba_rows,
    "rwkv4": rwkv4_rows,
    "rwkv6": rwkv6_rows,
    "jamba": jamba_rows,
    "mixtral": mixtral_rows,
}


if __name__ == "__main__":
    main()

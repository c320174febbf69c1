"""Forward any supported model directory on inputs from .npy/.npz files and save its
outputs as .npz.

--input FILE.npz holds arrays named as the model's arguments (input_ids, attention_mask,
pixel_values, ...); a .npy is input_ids if it holds integers, else pixel_values. The
output file gets every array field of the result (last_hidden_state, logits, ...;
tuples such as hidden_states as hidden_states_0, hidden_states_1, ...)."""

from __future__ import annotations

import time

NAME, HELP = "run", "forward a model directory on .npy/.npz inputs, save outputs as .npz"


def add_arguments(p):
    from ._common import add_model_options

    add_model_options(p)
    p.add_argument(
        "--input", required=True, help=".npz of named inputs, or a .npy (input_ids or pixel_values)"
    )
    p.add_argument("--output", default="outputs.npz", help="where to save the outputs (default outputs.npz)")
    p.add_argument("--causal-lm", action="store_true", help="load with the LM head (AutoModelForCausalLM)")


def load_inputs(path):
    import numpy as np

    import tfcore

    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise tfcore.TfcoreValueError(f"{path}: not a .npy/.npz of plain arrays ({e})") from None
    if isinstance(data, np.ndarray):
        return {"input_ids" if data.dtype.kind in "iu" else "pixel_values": data}
    with data:
        return {k: data[k] for k in data.files}


def run(args):
    import numpy as np

    import tfcore

    inputs = load_inputs(args.input)
    cls = tfcore.AutoModelForCausalLM if args.causal_lm else tfcore.AutoModel
    model = cls.from_pretrained(args.model, dtype=args.dtype, threads=args.threads)
    t0 = time.perf_counter()
    try:
        out = model(**inputs)
    except TypeError as e:  # an input name the model does not take
        raise tfcore.TfcoreTypeError(f"{args.input}: {e}") from None
    took = time.perf_counter() - t0
    arrays = {}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        elif isinstance(v, tuple) and all(isinstance(a, np.ndarray) for a in v):
            arrays.update({f"{k}_{i}": a for i, a in enumerate(v)})
    np.savez(args.output, **arrays)
    for k, v in arrays.items():
        print(f"{k}: {v.shape} {v.dtype}")
    print(f"saved to {args.output} ({took * 1e3:.1f} ms forward)")
    return 0

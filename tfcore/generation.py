"""``generate()`` for causal language models, with Hugging Face's arguments and results.

The per-token loop stays thin: one C call per layer per step (blocks append to a KVCache in
place), the LM head only on the last position, and the logits processors vectorised over
the batch in NumPy.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from ._progress import progress
from ._runtime import with_model_threads

TokenIds = Union[int, Sequence[int], None]


def _as_set(ids: TokenIds) -> List[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 (len(rows), longest): token lists left-padded with
    pad_id, the layout generate() takes for a batch of prompts of different lengths."""
    return _pad(rows, pad_id, left=True)


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as left_pad, right-padded: the layout for scoring a batch
    (every row's tokens at positions 0..len-1)."""
    return _pad(rows, pad_id, left=False)


def _pad(rows: Sequence[Sequence[int]], pad_id: int, left: bool) -> Tuple[np.ndarray, np.ndarray]:
    T = max([len(r) for r in rows] + [1])
    ids = np.full((len(rows), T), pad_id, np.int64)
    mask = np.zeros((len(rows), T), np.int64)
    for b, r in enumerate(rows):
        if len(r):
            cols = slice(T - len(r), T) if left else slice(0, len(r))
            ids[b, cols] = r
            mask[b, cols] = 1
    return ids, mask


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """HF's position_ids for (left-)padded batches: cumsum(mask) - 1, pads set to 1."""
    pos = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, pos).astype(np.int64)


def apply_repetition_penalty(logits: np.ndarray, sequences: np.ndarray, penalty: float) -> None:
    """In place, like HF: seen tokens' logits divided by penalty if > 0, multiplied if < 0."""
    for b in range(logits.shape[0]):
        seen = np.unique(sequences[b])
        vals = logits[b, seen]
        logits[b, seen] = np.where(vals > 0, vals / penalty, vals * penalty)


def filter_top_k_top_p(logits: np.ndarray, top_k: Optional[int], top_p: Optional[float]) -> np.ndarray:
    """Logits with everything outside the top-k and the top-p nucleus set to -inf (HF order:
    temperature, then top-k, then top-p; the token that crosses p is kept)."""
    out = logits.copy()
    V = out.shape[-1]
    if top_k is not None and 0 < top_k < V:
        kth = np.partition(out, V - top_k, axis=-1)[:, V - top_k][:, None]
        out[out < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(out, axis=-1, kind="stable")  # ascending, like HF
        sorted_logits = np.take_along_axis(out, order, axis=-1)
        probs = np.exp(sorted_logits - sorted_logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        cum = np.cumsum(probs, axis=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[:, -1] = False  # keep at least one
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        out[remove] = -np.inf
    return out


def ban_repeated_ngrams(scores: np.ndarray, sequences: np.ndarray, n: int) -> None:
    """In place, as HF's NoRepeatNGramLogitsProcessor: for each row of sequences (rows, L),
    every token that would complete an n-gram already in the row gets -inf."""
    rows, L = sequences.shape
    if n <= 0 or L < n:
        return
    prefix = sequences[:, L + 1 - n :]  # (rows, n - 1): the n-gram the next token completes
    windows = np.lib.stride_tricks.sliding_window_view(sequences, n, axis=1)  # (rows, L - n + 1, n)
    r, w = np.nonzero((windows[..., :-1] == prefix[:, None, :]).all(-1))
    tokens = windows[r, w, -1]
    keep = tokens < scores.shape[-1]
    scores[r[keep], tokens[keep]] = -np.inf


def constrain_scores(
    scores: np.ndarray,
    sequences: np.ndarray,
    prompt_len: int,
    max_len: int,
    eos: List[int],
    no_repeat_ngram_size: int = 0,
    min_length: int = 0,
    min_new_tokens: int = 0,
    forced_bos_token_id: Optional[int] = None,
    forced_eos_token_id: TokenIds = None,
) -> None:
    """In place, HF's logits processors in HF's order on scores (rows, V) for the next token
    of sequences (rows, cur): no_repeat_ngram_size, min_length (eos banned while cur <
    min_length), min_new_tokens (while cur - prompt_len < it), forced BOS (the first token
    after a 1-token decoder start), forced EOS (the last token before max_len)."""
    cur = sequences.shape[1]
    if no_repeat_ngram_size:
        ban_repeated_ngrams(scores, sequences, no_repeat_ngram_size)
    if eos and (cur < min_length or cur - prompt_len < min_new_tokens):
        scores[:, eos] = -np.inf
    if forced_bos_token_id is not None and cur == 1:
        scores[:] = -np.inf
        scores[:, int(forced_bos_token_id)] = 0
    forced_eos = _as_set(forced_eos_token_id)
    if forced_eos and cur == max_len - 1:
        scores[:] = -np.inf
        scores[:, forced_eos] = 0


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[b, idx[b, k], ...] for (B, N, ...) a and (B, K) idx."""
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row, best first (stable on ties: the lower index
    first). Over a large vocabulary (beam search: beams x V entries) a full sort dominated a
    step; only the entries >= the row's k-th largest value are sorted (all of them when ties
    at that value are many)."""
    n = x.shape[-1]
    if k >= n or n <= 4096:
        return np.argsort(-x, axis=-1, kind="stable")[:, :k]
    out = np.empty((x.shape[0], k), np.int64)
    for b, row in enumerate(x):
        kth = np.partition(row, n - k)[n - k]  # the k-th largest value
        cand = np.flatnonzero(row >= kth)  # ascending index order
        if cand.size > 8 * k + 64:  # many ties at the k-th value (e.g. -inf): sort the row
            out[b] = np.argsort(-row, kind="stable")[:k]
        else:
            out[b] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


def _stop_list(stop_strings, tokenizer, num_beams: int) -> List[str]:
    if stop_strings is None:
        return []
    stops = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
    if not all(isinstance(s, str) and s for s in stops):
        raise _C.TfcoreTypeError(f"stop_strings must be non-empty str, got {stop_strings!r}")
    if stops and tokenizer is None:
        raise _C.TfcoreValueError("stop_strings needs tokenizer= to decode the generated tokens")
    if stops and num_beams > 1:
        raise _C.TfcoreValueError("stop_strings works with greedy search and sampling, not num_beams > 1")
    return stops


def _hit_stop(tokenizer, new: np.ndarray, stops: List[str], finished: np.ndarray) -> np.ndarray:
    """(B,) bool: rows not yet finished whose decoded new tokens contain a stop string."""
    hit = np.zeros(new.shape[0], bool)
    for b in np.flatnonzero(~finished):
        s = tokenizer.decode([int(t) for t in new[b]], skip_special_tokens=True)
        hit[b] = any(stop in s for stop in stops)
    return hit


# generation_config.json settings generate() takes as defaults for every family (HF's
# GenerationConfig): the length limit and beam search, as summarisation checkpoints set them
SEARCH_KEYS = ("num_beams", "length_penalty", "early_stopping", "max_length")


def _config_int(values: dict, key: str, default, low: int):
    """values[key] as an int >= low (default when absent); a checkpoint's bad value raises."""
    v = values.get(key, default)
    if v is default:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise _C.TfcoreValueError(f"generation_config.json: {key} must be an integer >= {low}, got {v!r}")
    return int(v)


def read_generation_defaults(directory, keys: Sequence[str]) -> dict:
    """The given keys of a checkpoint's generation_config.json that are set (HF lets them
    override config.json); {} when the file is missing or unreadable."""
    import json
    from pathlib import Path

    path = Path(directory) / "generation_config.json"
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text())
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {k: values[k] for k in keys if values.get(k) is not None}


class GenerationMixin:
    """generate() for models whose forward takes (input_ids, attention_mask, position_ids,
    past_key_values, logits_to_keep) and that provide new_cache(batch, capacity).
    Encoder-decoder models override _generation_start (encode once, decode from
    decoder_start_token_id) and keep the same search loops."""

    generation_defaults: dict

    def _generation_start(
        self, ids: np.ndarray, mask: np.ndarray, copies: int, decoder_start_token_id: Optional[int]
    ):
        """(prompt ids, prompt mask, step) for the search loops. step(ids, mask, positions,
        cache) returns float logits (rows, V) of the last position, where every input row is
        repeated `copies` times in a row (beam search); the loop extends the prompt.
        Decoder-only: the prompt is the input itself and step is forward() on the new tokens."""
        if decoder_start_token_id is not None:
            raise _C.TfcoreValueError(
                "decoder_start_token_id is for encoder-decoder models; "
                f"{type(self).__name__} continues input_ids"
            )

        def step(step_ids, step_mask, positions, cache):
            return self.forward(
                step_ids,
                attention_mask=step_mask,
                position_ids=positions,
                past_key_values=cache,
                logits_to_keep=1,
            ).logits[:, -1, :]

        return ids, mask, step

    def _search_defaults(self) -> dict:
        """generation_config.json's SEARCH_KEYS beside the checkpoint this model was loaded from
        (read once; {} for a model built in memory)."""
        cached = self.__dict__.get("_search_defaults_cache")
        if cached is None:
            path = getattr(self, "name_or_path", None)
            cached = read_generation_defaults(path, SEARCH_KEYS) if path else {}
            self.__dict__["_search_defaults_cache"] = cached
        return cached

    def _length_counted_before_new_tokens(self, prompt_len: int) -> int:
        """Tokens HF's max_length counts before the new ones: the prompt (decoder-only)."""
        return prompt_len

    def _check_generation_length(self, prompt_len: int, max_new_tokens: int, cache_policy: str) -> None:
        """Raise if generation would run past learned position embeddings (position_limit)."""
        limit = getattr(self, "position_limit", None)
        T0 = prompt_len
        if limit is not None and T0 + max_new_tokens > limit:
            bounded = (
                f" A bounded KV cache (cache_policy={cache_policy!r}) bounds memory, not positions."
                if cache_policy != "full"
                else ""
            )
            raise _C.TfcoreValueError(
                f"{type(self).__name__} has learned position embeddings for {limit} positions: a prompt "
                f"of {T0} tokens + max_new_tokens={max_new_tokens} = {T0 + max_new_tokens} would go "
                f"past them.{bounded} Lower max_new_tokens to at most {max(limit - T0, 0)}, "
                "or use a model with rotary or ALiBi positions (Llama, Mistral, BLOOM) for longer generation"
            )

    def _constraints(self, defaults: dict, **given) -> dict:
        """The HF constraints generate() applies: each argument, else the checkpoint's default,
        checked; only the active ones are returned ({} when none is)."""
        V = getattr(self, "vocab_size", None)
        out = {}
        for key, value in given.items():
            if value is None:
                value = defaults.get(key)
            if value is None:
                continue
            if key.startswith("forced_"):
                many = key == "forced_eos_token_id" and isinstance(value, (list, tuple, np.ndarray))
                ids = list(value) if many else [value]
                ok = len(ids) > 0 and all(
                    isinstance(i, (int, np.integer))
                    and not isinstance(i, bool)
                    and 0 <= i < (V if V is not None else int(i) + 1)
                    for i in ids
                )
                if not ok:
                    kind = "a token id (or a list of them)" if key == "forced_eos_token_id" else "a token id"
                    raise _C.TfcoreValueError(f"{key} must be {kind} in [0, {V}), got {value!r}")
                out[key] = int(ids[0]) if key == "forced_bos_token_id" else [int(i) for i in ids]
            else:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                    raise _C.TfcoreValueError(f"{key} must be an int >= 0, got {value!r}")
                if value:
                    out[key] = int(value)
        return out

    @with_model_threads
    def generate(
        self,
        input_ids,
        attention_mask=None,
        max_new_tokens: Optional[int] = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: Optional[int] = 50,
        top_p: Optional[float] = 1.0,
        repetition_penalty: float = 1.0,
        eos_token_id: TokenIds = None,
        pad_token_id: Optional[int] = None,
        num_beams: Optional[int] = None,
        num_return_sequences: int = 1,
        length_penalty: Optional[float] = None,
        early_stopping: Union[bool, str, None] = None,
        seed: Optional[int] = None,
        streamer: Optional[Callable[[np.ndarray], None]] = None,
        cache_policy: str = "full",
        cache_budget: Optional[int] = None,
        n_sink: int = 4,
        cache_dtype: str = "float32",
        decoder_start_token_id: Optional[int] = None,
        stop_strings: Union[str, Sequence[str], None] = None,
        tokenizer=None,
        no_repeat_ngram_size: Optional[int] = None,
        min_length: Optional[int] = None,
        min_new_tokens: Optional[int] = None,
        forced_bos_token_id: Optional[int] = None,
        forced_eos_token_id: TokenIds = None,
        max_length: Optional[int] = None,
    ) -> np.ndarray:
        """Continue each prompt by up to max_new_tokens tokens; returns (B, prompt + new) int64.
        Encoder-decoder models encode input_ids once and return (B, 1 + new) decoder tokens
        starting with decoder_start_token_id (default: the checkpoint's), like HF.

        Greedy (default) or sampling (do_sample) with temperature, top_k, top_p and a seed;
        repetition_penalty; eos_token_id / pad_token_id default to the checkpoint's
        generation_config.json / config.json like HF; left-padded batches via attention_mask.
        streamer(tokens) is called with the (B,) new tokens of every step (greedy/sampling).
        Beam search (num_beams > 1) follows HF's algorithm: length_penalty, early_stopping
        (False, True or "never"), num_return_sequences <= num_beams best hypotheses.
        cache_policy "full" (default), "sink_window" (n_sink first tokens + recent ones) or
        "tova" keeps at most cache_budget tokens per layer in the KV cache. cache_dtype
        "bfloat16" or "int8" stores the KV cache in half / about a quarter of the memory.
        stop_strings (with tokenizer=, a ``tokenizers.Tokenizer`` or a transformers tokenizer,
        as HF) ends a row once its decoded new text contains one of them (greedy/sampling).
        HF's constraints, in greedy, sampling and beam search: no_repeat_ngram_size (no n-gram
        twice in a row's tokens), min_length (total tokens, prompt or decoder start included)
        and min_new_tokens before eos may end a row, forced_bos_token_id (the first new token
        of an encoder-decoder) and forced_eos_token_id (the last one at the length limit);
        None takes the checkpoint's value (BART-style generation configs set them), else off.
        Length and search settings as HF: max_new_tokens, else max_length (total tokens: prompt
        + new for decoder-only models, decoder tokens with the start token for
        encoder-decoders), else the checkpoint's generation_config.json max_length, else 20 new
        tokens; num_beams, length_penalty and early_stopping likewise default to
        generation_config.json (a summarisation checkpoint's beam settings), else 1, 1.0, False.
        Sampling settings are not taken from it: generation is greedy unless do_sample=True."""
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise _C.TfcoreValueError(
                f"input_ids must be a non-empty (batch, seq_len) integer array, got {ids.shape} {ids.dtype}"
            )
        search = {
            **self._search_defaults(),
            **{
                k: v
                for k, v in getattr(self, "generation_defaults", {}).items()
                if k in SEARCH_KEYS and v is not None
            },
        }
        if num_beams is None:
            num_beams = _config_int(search, "num_beams", 1, 1)
        if length_penalty is None:
            length_penalty = float(search.get("length_penalty", 1.0))
        if early_stopping is None:
            early_stopping = search.get("early_stopping", False)
            if early_stopping not in (True, False, "never"):
                early_stopping = False
        if max_new_tokens is None:
            if max_length is None:
                max_length = search.get("max_length")
                if max_length is not None:
                    max_length = _config_int(search, "max_length", None, 1)
            if max_length is None:
                max_new_tokens = 20
            else:
                if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
                    raise _C.TfcoreTypeError(f"max_length must be an int, got {type(max_length).__name__}")
                start = self._length_counted_before_new_tokens(ids.shape[1])
                max_new_tokens = max(int(max_length) - start, 0)
        if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)):
            raise _C.TfcoreTypeError(f"num_beams must be an int, got {type(num_beams).__name__}")
        if num_beams < 1:
            raise _C.TfcoreValueError(f"num_beams must be >= 1, got {num_beams}")
        if num_beams > 1 and do_sample:
            raise _C.TfcoreValueError("beam sampling (num_beams > 1 with do_sample=True) is not supported")
        if num_beams > 1 and num_return_sequences > num_beams:
            raise _C.TfcoreValueError(
                f"num_return_sequences={num_return_sequences} exceeds num_beams={num_beams}"
            )
        if max_new_tokens < 0:
            raise _C.TfcoreValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample and not temperature > 0:
            raise _C.TfcoreValueError(f"temperature must be > 0, got {temperature}")
        if repetition_penalty <= 0:
            raise _C.TfcoreValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        if num_return_sequences > 1 and num_beams == 1:
            ids = np.repeat(ids, num_return_sequences, axis=0)
            if attention_mask is not None:
                attention_mask = np.repeat(np.asarray(attention_mask), num_return_sequences, axis=0)
        B, T0 = ids.shape
        mask = (
            np.ones((B, T0), np.int64)
            if attention_mask is None
            else np.asarray(attention_mask).astype(np.int64)
        )
        if mask.shape != (B, T0):
            raise _C.TfcoreValueError(f"attention_mask has shape {mask.shape}, expected {(B, T0)}")
        defaults = getattr(self, "generation_defaults", {})
        eos = _as_set(eos_token_id if eos_token_id is not None else defaults.get("eos_token_id"))
        if pad_token_id is None:
            pad_token_id = defaults.get("pad_token_id")
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
        stops = _stop_list(stop_strings, tokenizer, num_beams)
        constraints = self._constraints(
            defaults,
            no_repeat_ngram_size=no_repeat_ngram_size,
            min_length=min_length,
            min_new_tokens=min_new_tokens,
            forced_bos_token_id=forced_bos_token_id,
            forced_eos_token_id=forced_eos_token_id,
        )
        rng = np.random.default_rng(seed)
        if cache_policy != "full" and not cache_budget:
            raise _C.TfcoreValueError(
                f"cache_policy={cache_policy!r} needs cache_budget (tokens kept per layer)"
            )
        self._check_generation_length(T0, max_new_tokens, cache_policy)
        ids, mask, step = self._generation_start(
            np.ascontiguousarray(ids, dtype=np.int64), mask, num_beams, decoder_start_token_id
        )
        B, T0 = ids.shape

        def constrain(scores: np.ndarray, seqs: np.ndarray) -> None:
            if constraints:
                constrain_scores(scores, seqs, T0, T0 + max_new_tokens, eos, **constraints)

        if num_beams > 1:
            return self._beam_search(
                step,
                ids,
                mask,
                max_new_tokens,
                num_beams,
                length_penalty,
                early_stopping,
                eos,
                pad_token_id,
                repetition_penalty,
                num_return_sequences,
                streamer,
                cache_dtype,
                constrain,
            )

        sequences = ids
        # a family's logits processors (Whisper's token suppression): scores, sequences -> scores
        process = getattr(step, "process_scores", None)
        cache = self.new_cache(B, T0 + max_new_tokens, cache_policy, cache_budget, n_sink, cache_dtype)
        finished = np.zeros(B, bool)
        step_ids, step_pos = sequences, positions_from_mask(mask)
        for _ in progress(range(max_new_tokens), total=max_new_tokens, desc="generating", unit="token"):
            logits = step(step_ids, mask, step_pos, cache).astype(np.float64)
            if repetition_penalty != 1.0:
                apply_repetition_penalty(logits, sequences, repetition_penalty)
            constrain(logits, sequences)
            if process is not None:
                logits = process(logits, sequences)
            if do_sample:
                logits = filter_top_k_top_p(logits / temperature, top_k, top_p)
                probs = np.exp(logits - logits.max(-1, keepdims=True))
                probs /= probs.sum(-1, keepdims=True)
                cum = np.cumsum(probs, axis=-1)
                u = rng.random((B, 1)) * cum[:, -1:]
                nxt = np.minimum((cum < u).sum(-1), logits.shape[-1] - 1)
            else:
                nxt = logits.argmax(-1)
            nxt = np.where(finished, pad_token_id, nxt).astype(np.int64)
            sequences = np.concatenate([sequences, nxt[:, None]], axis=1)
            if streamer is not None:
                streamer(nxt)
            if eos:
                finished |= np.isin(nxt, eos)
            if stops:
                finished |= _hit_stop(tokenizer, sequences[:, T0:], stops, finished)
            if finished.all():
                break
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)
            step_pos = step_pos[:, -1:] + 1
            step_ids = np.ascontiguousarray(nxt[:, None])
        return sequences

    def _beam_search(
        self,
        step,
        ids,
        mask,
        max_new_tokens,
        nb,
        length_penalty,
        early_stopping,
        eos,
        pad_token_id,
        repetition_penalty,
        num_return_sequences,
        streamer,
        cache_dtype="float32",
        constrain=None,
    ):
        """HF's vectorised beam search: each step keeps the best (1 + #eos) * nb continuations,
        continues the nb best unfinished ones, and merges finished ones into the nb best
        hypotheses scored by sum of log-probs / generated_length ** length_penalty."""
        B, T0 = ids.shape
        max_len = T0 + max_new_tokens
        keep = max(2, 1 + len(eos)) * nb
        top_mask = np.arange(keep) < nb
        fill = (pad_token_id or eos[0]) if eos else -1
        running = np.full((B, nb, max_len), fill, np.int64)
        running[:, :, :T0] = ids[:, None, :]
        finished_seqs = running.copy()
        running_scores = np.zeros((B, nb), np.float32)
        running_scores[:, 1:] = -1e9
        finished_scores = np.full((B, nb), -1e9, np.float32)
        is_finished = np.zeros((B, nb), bool)
        heuristic_open = np.ones((B, 1), bool)
        running_idx = np.full((B, nb, max(max_new_tokens, 1)), -1, np.int64)
        finished_idx = running_idx.copy()
        flat_mask = np.repeat(mask, nb, axis=0)
        cache = self.new_cache(B * nb, max_len, dtype=cache_dtype)
        step_ids, step_pos, cur = np.repeat(ids, nb, axis=0), positions_from_mask(flat_mask), T0
        batch_offset = (np.arange(B) * nb)[:, None]
        process = getattr(step, "process_scores", None)
        while cur < max_len:
            logits = step(np.ascontiguousarray(step_ids), flat_mask, step_pos, cache).astype(np.float32)
            log_probs = log_softmax(logits)
            if repetition_penalty != 1.0:
                apply_repetition_penalty(
                    log_probs, running.reshape(B * nb, max_len)[:, :cur], repetition_penalty
                )
            if constrain is not None:
                constrain(log_probs, running.reshape(B * nb, max_len)[:, :cur])
            if process is not None:  # after log_softmax, as HF applies logits processors in beam search
                log_probs = process(log_probs, running.reshape(B * nb, max_len)[:, :cur])
            V = log_probs.shape[-1]
            acc = (log_probs.reshape(B, nb, V) + running_scores[:, :, None]).reshape(B, nb * V)
            top = _top(acc, keep)
            top_scores = np.take_along_axis(acc, top, axis=1)
            src_beam, tokens = top // V, top % V
            top_seqs = _take(running, src_beam).copy()
            top_seqs[:, :, cur] = tokens
            top_idx = _take(running_idx, src_beam).copy()
            top_idx[:, :, cur - T0] = src_beam + batch_offset
            hits = np.isin(tokens, eos) | (cur + 1 >= max_len)
            # the nb best continuations that did not stop keep running
            cont_scores = (top_scores + hits * np.float32(-1e9)).astype(np.float32)
            nxt = _top(cont_scores, nb)
            running, running_scores, running_idx = (
                _take(top_seqs, nxt),
                _take(cont_scores, nxt),
                _take(top_idx, nxt),
            )
            # stopped ones among the top nb may enter the finished hypotheses
            just = hits & top_mask[None, :]
            cand = top_scores / np.float32((cur + 1 - T0) ** length_penalty)
            full = is_finished.all(axis=-1, keepdims=True) & (early_stopping is True)
            cand = (
                cand
                + full * np.float32(-1e9)
                + (~heuristic_open) * np.float32(-1e9)
                + (~just) * np.float32(-1e9)
            )
            m_seqs = np.concatenate([finished_seqs, top_seqs], axis=1)
            m_scores = np.concatenate([finished_scores, cand.astype(np.float32)], axis=1)
            m_idx = np.concatenate([finished_idx, top_idx], axis=1)
            m_fin = np.concatenate([is_finished, just], axis=1)
            best = _top(m_scores, nb)
            finished_seqs, finished_scores = _take(m_seqs, best), _take(m_scores, best)
            finished_idx, is_finished = _take(m_idx, best), _take(m_fin, best)
            cache.reorder(np.ascontiguousarray(running_idx[:, :, cur - T0].reshape(-1)))
            cur += 1
            # stop when no running beam can beat the worst finished one (HF's heuristic)
            if early_stopping == "never" and length_penalty > 0.0:
                best_len = max_len - T0
            else:
                best_len = cur - T0
            best_possible = running_scores[:, :1] / np.float32(best_len**length_penalty)
            worst = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), np.float32(-1e9))
            heuristic_open = heuristic_open & (best_possible > worst).any(axis=-1, keepdims=True)
            open_beam = not (is_finished.all() and early_stopping is True)
            if not (heuristic_open.any() and open_beam and not hits.all()):
                break
            flat_mask = np.concatenate([flat_mask, np.ones((B * nb, 1), np.int64)], axis=1)
            step_pos = step_pos[:, -1:] + 1
            step_ids = running[:, :, cur - 1].reshape(-1, 1)
        out = finished_seqs[:, :num_return_sequences].reshape(B * num_return_sequences, max_len)
        idx = finished_idx[:, :num_return_sequences].reshape(B * num_return_sequences, -1)
        length = T0 + int((idx + 1).astype(bool).sum(axis=1).max()) if max_new_tokens else T0
        return out[:, :length]

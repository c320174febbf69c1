"""tfcore models in EleutherAI's lm-evaluation-harness: importing this module registers the
model name ``"tfcore"``.

    import lm_eval, tfcore.integrations.lm_eval
    lm_eval.simple_evaluate(model="tfcore", model_args="pretrained=DIR,dtype=bfloat16", tasks=[...])
    lm_eval.simple_evaluate(model=tfcore.integrations.lm_eval.TfcoreLM(DIR), tasks=[...])

:class:`TfcoreLM` is a ``lm_eval.api.model.TemplateLM``: the harness's own rules split
(context, continuation) into tokens exactly as its Hugging Face backend does, so scores are
comparable; tfcore runs the forward passes (length-sorted batches) and ``generate`` (greedy
or sampled, stopping at the task's ``until`` strings). The tokenizer is the checkpoint's,
through ``transformers.AutoTokenizer`` (a dependency of lm_eval itself); its chat template
is used when the harness asks for one (``apply_chat_template=True``).

Encoder-decoder checkpoints (T5) run as the HF backend's ``"seq2seq"`` backend: the context
goes to the encoder, the continuation is scored as decoder labels (shifted right after the
decoder start token), and generation returns the decoder's text.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .. import _C
from ..generation import left_pad, right_pad

try:
    import lm_eval.models  # noqa: F401  (the built-in backends first: the registry loads them only when empty)
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "tfcore.integrations.lm_eval needs lm-evaluation-harness: pip install 'tfcore[lm-eval]'"
    ) from e

_SEQLEN_KEYS = ("n_positions", "max_position_embeddings", "n_ctx")
# transformers' stand-in for "no limit" in tokenizer_config.json (int(1e30))
_UNSET_MODEL_MAX_LENGTH = 1000000000000000019884624838656


def _load(path: str, backend: str, dtype: str, threads: Optional[int]):
    """The checkpoint's language model: its causal LM, or its encoder-decoder LM when the
    model type has no causal LM (or backend="seq2seq")."""
    import tfcore

    from ..config import Config
    from ..hub import resolve
    from ..models import registry

    model_type = Config.from_dir(resolve(path)).get("model_type")
    tasks = registry.tasks_for(model_type)
    if backend == "default":
        backend = "seq2seq" if "seq2seq-lm" in tasks and "causal-lm" not in tasks else "causal"
    elif tasks and ("seq2seq-lm" if backend == "seq2seq" else "causal-lm") not in tasks:
        raise _C.TfcoreValueError(
            f"backend={backend!r} does not fit model_type {model_type!r} (tfcore has: {', '.join(tasks)})"
        )
    auto = tfcore.AutoModelForSeq2SeqLM if backend == "seq2seq" else tfcore.AutoModelForCausalLM
    return auto.from_pretrained(path, dtype=dtype, threads=threads)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


def _score(logits: np.ndarray, cont: List[int]) -> Tuple[float, bool]:
    """(sum of log p(cont), cont is the greedy choice at every step) from the (k, V) logits
    that predict the k continuation tokens."""
    logp = _log_softmax(logits)
    picked = logp[np.arange(len(cont)), cont]
    return float(picked.sum()), bool((logp.argmax(-1) == np.asarray(cont)).all())


def _sampling(kw: Dict[str, Any]) -> Dict[str, Any]:
    """generate() options from the task's remaining gen_kwargs: greedy unless do_sample
    (temperature 0 means 1.0 there, as the HF backend), with top_k / top_p / seed."""
    gen: Dict[str, Any] = {"do_sample": bool(kw.get("do_sample", False))}
    if gen["do_sample"]:
        temperature = float(kw.get("temperature", 0.0) or 0.0)
        gen["temperature"] = temperature if temperature > 0 else 1.0
        for k in ("top_k", "top_p", "seed"):
            if k in kw:
                gen[k] = kw[k]
    return gen


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _C.TfcoreValueError(f"{name} must be a positive int, got {value!r}")
    return value


@register_model("tfcore")
class TfcoreLM(TemplateLM):
    """An lm-evaluation-harness model backed by a tfcore causal LM.

    pretrained: a checkpoint directory (config.json, *.safetensors, tokenizer files) or an
    already loaded tfcore causal LM; dtype "float32", "bfloat16" or "int8"; batch_size rows
    per forward pass ("auto" picks 8); max_length: context window (default: the config's
    n_positions / max_position_embeddings, as the HF backend); max_gen_toks: default
    generation budget; add_bos_token: prepend BOS to every input (as the HF backend's
    option, default: the tokenizer's own rule); threads: as from_pretrained; backend:
    "default" (from the checkpoint: encoder-decoder models run "seq2seq"), "causal" or
    "seq2seq", as the HF backend's option."""

    def __init__(
        self,
        pretrained: Any,
        dtype: str = "float32",
        batch_size: Union[int, str] = 1,
        max_length: Optional[int] = None,
        max_gen_toks: int = 256,
        add_bos_token: Optional[bool] = None,
        threads: Optional[int] = None,
        tokenizer: Optional[str] = None,
        backend: str = "default",
        **unused: Any,
    ) -> None:
        super().__init__()

        if backend not in ("default", "causal", "seq2seq"):
            raise _C.TfcoreValueError(f'backend must be "default", "causal" or "seq2seq", got {backend!r}')
        if isinstance(pretrained, str) or hasattr(pretrained, "__fspath__"):
            self.model = _load(str(pretrained), backend, dtype, None if threads is None else int(threads))
        elif hasattr(pretrained, "generate") and hasattr(pretrained, "name_or_path"):
            self.model = pretrained
        else:
            raise _C.TfcoreTypeError(
                f"pretrained must be a checkpoint directory or a tfcore language model, got {type(pretrained).__name__}"
            )
        seq2seq = bool(self.model.config.get("is_encoder_decoder"))
        if backend != "default" and (backend == "seq2seq") != seq2seq:
            kind = "an encoder-decoder" if seq2seq else "a decoder-only"
            raise _C.TfcoreValueError(f"backend={backend!r} does not fit {kind} model")
        self.backend = "seq2seq" if seq2seq else "causal"
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or self.model.name_or_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.batch_size = 8 if str(batch_size).startswith("auto") else _positive_int("batch_size", batch_size)
        self._max_length = None if max_length is None else _positive_int("max_length", max_length)
        self.max_gen_toks = _positive_int("max_gen_toks", max_gen_toks)
        if isinstance(add_bos_token, str):
            add_bos_token = add_bos_token.lower() in ("1", "true", "yes")
        self.add_bos_token = add_bos_token

    # the harness's tokenization hooks -------------------------------------------------------

    @property
    def max_length(self) -> int:
        """Context window in tokens: max_length=, else the config's n_positions /
        max_position_embeddings / n_ctx, else the tokenizer's model_max_length when it sets
        one, else 2048 (the HF backend's rule)."""
        if self._max_length is not None:
            return self._max_length
        for key in _SEQLEN_KEYS:
            if self.model.config.get(key):
                return int(self.model.config.get(key))
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < _UNSET_MODEL_MAX_LENGTH:
            return limit
        return 2048

    @property
    def eot_token_id(self) -> int:
        """The tokenizer's EOS id (end of text: generation stops there)."""
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is conditioned on: BOS, else EOS (as the HF backend)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        """The tokenizer's path with "/" replaced (the harness keys its cache on it)."""
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs: Any) -> List[int]:
        """Token ids of string, with the HF backend's rule for special tokens: the explicit
        flag, else add_bos_token, else the tokenizer's default; never a second BOS."""
        special = add_special_tokens if add_special_tokens is not None else self.add_bos_token
        if add_special_tokens is None:
            bos = self.tokenizer.decode([self.prefix_token_id])
            if bos and string.startswith(bos):
                special = False
        if special is None:
            return self.tokenizer.encode(string)
        return self.tokenizer.encode(string, add_special_tokens=bool(special))

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        """Text of token ids (special tokens skipped by default)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self, chat_history: List[Dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The conversation rendered with the tokenizer's chat template (a clear error without one)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise _C.TfcoreValueError(
                f"{self.model.name_or_path}: the tokenizer has no chat template (apply_chat_template=True needs one)"
            )
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # scoring ----------------------------------------------------------------------------------

    def _loglikelihood_tokens(
        self, requests: List[Tuple[Any, List[int], List[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> List[Tuple[float, bool]]:
        """(sum log p(continuation | context), continuation is the greedy one) per request: the
        last max_length + 1 tokens of context + continuation, the last one dropped as input
        (the HF backend's window), right-padded batches sorted longest first."""
        if self.backend == "seq2seq":
            return self._seq2seq_loglikelihood_tokens(requests, disable_tqdm)
        rows = []
        for _, ctx, cont in requests:
            if not cont:
                raise _C.TfcoreValueError("a loglikelihood request has an empty continuation")
            inp = (list(ctx) + list(cont))[-(self.max_length + 1) :][:-1]
            rows.append((inp, list(cont)))
        out: List[Tuple[float, bool]] = [(0.0, False)] * len(rows)
        pad = self.tokenizer.pad_token_id or 0
        for batch in self._batches(len(rows), lambda i: -len(rows[i][0]), disable_tqdm):
            ids, mask = right_pad([rows[i][0] for i in batch], pad)
            logits = self.model(ids, attention_mask=mask).logits
            for b, i in enumerate(batch):
                inp, cont = rows[i]
                n, k = len(inp), len(cont)
                out[i] = _score(logits[b, n - k : n], cont)  # the positions predicting cont
        return out

    def _batches(self, n: int, key, disable_tqdm: bool):
        """Request indices in batch_size batches, sorted by key, with a progress bar."""
        from .._progress import progress

        order = sorted(range(n), key=key)
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        return progress(batches, desc="loglikelihood", show=False if disable_tqdm else None, unit="batch")

    def _seq2seq_loglikelihood_tokens(self, requests, disable_tqdm: bool) -> List[Tuple[float, bool]]:
        """The HF backend's seq2seq scoring: the last max_length context tokens into the
        encoder, the continuation (its last max_length tokens) as labels: the decoder reads
        decoder_start_token_id + continuation[:-1] and predicts every continuation token."""
        start = self.model.generation_defaults.get("decoder_start_token_id")
        if start is None:
            start = self.model.config.get("decoder_start_token_id", self.model.config.get("pad_token_id"))
        if start is None:
            raise _C.TfcoreValueError(f"{self.model.name_or_path}: no decoder_start_token_id in the config")
        rows = []
        for _, ctx, cont in requests:
            if not cont or not ctx:
                raise _C.TfcoreValueError(
                    "a seq2seq loglikelihood request needs a context and a continuation"
                )
            rows.append((list(ctx)[-self.max_length :], list(cont)[-self.max_length :]))
        out: List[Tuple[float, bool]] = [(0.0, False)] * len(rows)
        pad = self.tokenizer.pad_token_id or 0
        longest_first = lambda i: (-len(rows[i][0]), -len(rows[i][1]))  # noqa: E731
        for batch in self._batches(len(rows), longest_first, disable_tqdm):
            ids, mask = right_pad([rows[i][0] for i in batch], pad)
            dec, _ = right_pad([[start] + rows[i][1][:-1] for i in batch], pad)
            logits = self.model(ids, attention_mask=mask, decoder_input_ids=dec).logits
            for b, i in enumerate(batch):
                cont = rows[i][1]
                out[i] = _score(logits[b, : len(cont)], cont)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> List[float]:
        """Log-likelihood of each whole text, in windows of max_length tokens (the harness's
        rolling windows, each conditioned on the prefix token or the previous window)."""
        from lm_eval import utils

        windows, owner = [], []
        for r, (string,) in enumerate(req.args for req in requests):
            for w in utils.get_rolling_token_windows(
                token_list=self.tok_encode(string),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            ):
                windows.append((None,) + utils.make_disjoint_window(w))
                owner.append(r)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        total = [0.0] * len(requests)
        for r, (ll, _) in zip(owner, scores):
            total[r] += ll
        for req, ll in zip(requests, total):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, ll)
        return total

    # generation -------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> List[str]:
        """Continue each context (greedy unless the task's gen_kwargs sample) until one of its
        `until` strings or the end-of-text token; the text is cut before the stop string."""
        from .._progress import progress

        reqs = [req.args for req in requests]
        for i, (ctx, kw) in enumerate(reqs):
            if not isinstance(ctx, str) or not isinstance(kw, dict):
                raise _C.TfcoreTypeError(
                    f"request {i}: expected (context str, gen_kwargs dict), got {reqs[i]!r:.80}"
                )
        # one generate() per group of equal gen_kwargs, longest contexts first
        encoded = [self.tok_encode(ctx) for ctx, _ in reqs]
        key = [repr(sorted(kw.items(), key=lambda kv: kv[0])) for _, kw in reqs]
        order = sorted(range(len(reqs)), key=lambda i: (key[i], -len(encoded[i])))
        out: List[str] = [""] * len(reqs)
        groups: List[List[int]] = []
        for i in order:
            if groups and key[groups[-1][0]] == key[i] and len(groups[-1]) < self.batch_size:
                groups[-1].append(i)
            else:
                groups.append([i])
        from lm_eval.models.utils import (
            handle_stop_sequences,
            normalize_gen_kwargs,
            postprocess_generated_text,
        )

        eos_text = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        pad = self.tokenizer.pad_token_id or 0
        for group in progress(
            groups, desc="generate_until", show=False if disable_tqdm else None, unit="batch"
        ):
            kw = normalize_gen_kwargs(reqs[group[0]][1], self.max_gen_toks)
            until = handle_stop_sequences(kw.pop("until", None), eos=eos_text)
            max_new = int(kw.pop("max_gen_toks"))
            if self.backend == "seq2seq":
                # the HF backend passes max_length = context + max_gen_toks to generate(), which
                # for an encoder-decoder bounds the decoder's tokens (its start token included)
                rows = [encoded[i][-self.max_length :] for i in group]
                ids, mask = left_pad(rows, pad)
                seqs = self.model.generate(
                    ids,
                    attention_mask=mask,
                    max_new_tokens=ids.shape[1] + max_new - 1,
                    eos_token_id=self.eot_token_id,
                    pad_token_id=pad,
                    stop_strings=[u for u in until if u],
                    tokenizer=self.tokenizer,
                    **_sampling(kw),
                )
                for b, i in enumerate(group):
                    s = self.tok_decode([int(t) for t in seqs[b]])
                    out[i] = s = postprocess_generated_text(s, until, None)
                    self.cache_hook.add_partial("generate_until", reqs[i], s)
                continue
            if max_new >= self.max_length:
                raise _C.TfcoreValueError(
                    f"max_gen_toks={max_new} leaves no room for a context in max_length={self.max_length}"
                )
            keep = self.max_length - max_new
            ids, mask = left_pad([encoded[i][-keep:] for i in group], pad)
            T = ids.shape[1]
            seqs = self.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                eos_token_id=self.eot_token_id,
                pad_token_id=pad,
                stop_strings=[u for u in until if u],
                tokenizer=self.tokenizer,
                **_sampling(kw),
            )
            for b, i in enumerate(group):
                s = self.tok_decode([int(t) for t in seqs[b, T:]])
                out[i] = s = postprocess_generated_text(s, until, None)
                self.cache_hook.add_partial("generate_until", reqs[i], s)
        return out

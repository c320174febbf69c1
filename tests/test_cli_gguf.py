"""`tfcore generate` and `tfcore chat` on GGUF files, in a child process (the tfcore under
test): streamed tokens equal the API's greedy ones, the chat template shapes the prompt,
Ctrl-C stops a reply without ending the chat, files without a template are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_cli import ROOT, cli

import tfcore

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
import harness  # noqa: E402

TEMPLATE = (
    "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}ab{% endif %}"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-cli")
    (root / "plain.gguf").write_bytes(harness.tiny_llama_gguf(2))
    (root / "chat.gguf").write_bytes(harness.tiny_llama_gguf(3, chat_template=TEMPLATE))
    return root


def test_generate_accepts_gguf_ids_and_text(files):
    path = files / "plain.gguf"
    out = cli("generate", path, "--ids", "1,2,3", "--max-new-tokens", "6")
    assert out.returncode == 0, out.stderr
    want = tfcore.AutoModelForCausalLM.from_pretrained(path).generate(
        np.array([[1, 2, 3]]), max_new_tokens=6, eos_token_id=[]
    )
    tok = tfcore.text.load_tokenizer(path)  # the file has a vocabulary: the CLI prints text
    assert out.stdout.rstrip("\n") == tok.decode(want[0].tolist())
    out = cli("generate", path, "abc", "--max-new-tokens", "4")  # text through the GGUF vocabulary
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("abc")


def test_chat_streams_the_templated_greedy_reply(files):
    path = files / "chat.gguf"
    out = cli("chat", path, "--max-new-tokens", "5", stdin="a\nb\n")
    assert out.returncode == 0, out.stderr
    model = tfcore.AutoModelForCausalLM.from_pretrained(path)
    tok = tfcore.text.load_tokenizer(path)
    # turn 1: prompt "<s>a</s>ab" -> ids; the reply is the greedy continuation (stopping at </s>)
    ids = tok.encode("<s>a</s>ab", add_special_tokens=False).ids
    new = model.generate(np.array([ids]), max_new_tokens=5, eos_token_id=[5])[0, len(ids) :].tolist()
    reply = tok.decode([t for t in new if t != 5])
    assert out.stdout.splitlines()[0] == reply
    assert out.stderr.count("tok/s") == 2  # two turns
    no_template = cli("chat", files / "plain.gguf", stdin="hi\n")
    assert no_template.returncode == 1 and "no chat template" in no_template.stderr


def test_chat_ctrl_c_stops_the_reply_not_the_chat(files):
    env = {**os.environ, "TFCORE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "tfcore", "chat", str(files / "chat.gguf"), "--max-new-tokens", "200000"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        p.stdin.write(b"a\n")
        p.stdin.flush()
        p.stdout.read(1)  # the reply has started streaming
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)  # then the input ends: the chat ends normally
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert b"[interrupted]" in out

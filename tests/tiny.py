"""Shared pieces for the learner tests: a tiny model spec, one torch thread, a tokenizer built in code.

Import the fixtures into a test module (`from tests.tiny import SMALL, one_thread, tokenizer`)
to use them there; they are not global so the environment tests never import torch.
"""

from __future__ import annotations

import pytest
import torch

from agents.learn.tiny_model import TinyModelSpec, tokenizer_corpus, train_tokenizer

SMALL = TinyModelSpec(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small run fastest on one thread, and then never fight other processes for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tokenizer_corpus([]), 1024)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    """A tiny random model saved to disk with its tokenizer: what `--model DIR` loads in a subprocess."""
    from agents.learn.tiny_model import tiny_random_model

    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_random_model(tokenizer, SMALL, seed=0).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder

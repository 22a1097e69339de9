"""The transformers backend, on the same GGUF file (de-quantised), against llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

from geckokit.llm import yes_no_labels

pytestmark = pytest.mark.slow

PREFIX = "Passage: Honey bees tell each other where flowers are by dancing.\nQuery:"
QUERY = " how do bees communicate"


@pytest.fixture(scope="module")
def hf_llm(llm_path: str):  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from geckokit.llm.transformers_backend import TransformersLLM

    return TransformersLLM(llm_path, device="cpu", batch_size=2)


def test_agrees_with_llama_cpp(hf_llm, llm) -> None:
    hf = hf_llm.score([PREFIX, PREFIX], [QUERY, " why do bees dance"])
    cpp = llm.score([PREFIX, PREFIX], [QUERY, " why do bees dance"])
    for a, b in zip(hf, cpp, strict=True):
        assert a.tokens == b.tokens
        # Q4_K weights run de-quantised in fp32 here and with quantised activations in llama.cpp
        assert np.allclose(a.token_logprobs, b.token_logprobs, atol=0.35)
        assert a.mean == pytest.approx(b.mean, abs=0.15)
    prompt = "Question: Is Paris in France? Answer Yes or No.\nAnswer:"
    labels = hf_llm.label_logprobs([prompt], yes_no_labels())[0]
    assert labels["yes"] > labels["no"]
    chat = [{"role": "user", "content": "Name the capital of France in one word."}]
    assert "Paris" in hf_llm.generate([chat], max_tokens=6)[0].text

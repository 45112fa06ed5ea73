"""A small real tokenizer built in memory, so tests and random-weight models never need the network.

Byte-level BPE trained deterministically on text generated from the built-in word lists plus digits,
hexadecimal and punctuation, with a ChatML chat template (the same layout SmolLM2 uses).
"""

from __future__ import annotations

import functools
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ctxsparse.tasks import words

VOCAB_SIZE = 4000
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _training_text() -> list[str]:
    """A fixed corpus: every word in several casings, sentences, numbers, hex strings, code-like lines."""
    rng = random.Random("ctxsparse-local-tokenizer")
    lines = [" ".join(words.plain_words()), " ".join(w.capitalize() for w in words.plain_words())]
    lines += [" ".join(words.COMMON_WORDS)] * 20
    lines += [" ".join(words.FIRST_NAMES), " ".join(words.FILLER_SENTENCES)]
    lines += [words.sentence(rng) for _ in range(3000)]
    lines += [" ".join(str(rng.randrange(10 ** rng.randint(1, 7))) for _ in range(20)) for _ in range(200)]
    lines += ["-".join(f"{rng.getrandbits(32):08x}" for _ in range(4)) for _ in range(200)]
    lines += [
        "What is the special magic number for this key mentioned in the provided text?",
        'The answer is 42. {"name": "run", "arguments": {"command": "ls -la /srv/app"}}',
        "2024-05-01 12:00 INFO [api] GET /users/12 status 200 in 31 ms",
        "2024-05-01 12:00 ERROR [api] connection refused on port 8080 (error code E1234)",
        "-rw-r--r-- 1 dev dev  4096 May  1 src/app/main.py",
        "VAR ABCDE = 12345 ; src/app/main.py:120:    result = handler(request)",
        "<tool_call> tail -n 10 /var/log/app.log </tool_call> Tool output: Question: Answer: Problem:",
    ] * 20
    return lines


@functools.lru_cache(maxsize=1)
def build_local_tokenizer() -> PreTrainedTokenizerFast:
    """The shared local tokenizer (vocab 4000, eos '<|im_end|>', pad '<|endoftext|>', ChatML template).

    Cached per process: callers that change settings (padding side, template) should copy it first.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=1_000_000,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast

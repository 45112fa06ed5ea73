"""Shared fixtures for the task tests: the local tokenizer and variants of its chat template."""

import copy

import pytest

from ctxsparse.tokenizer_local import build_local_tokenizer

NO_TOOL_ROLE_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Only system, user and assistant roles are supported.') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tokenizer():
    return build_local_tokenizer()


@pytest.fixture(scope="session")
def no_tool_tokenizer():
    tok = copy.deepcopy(build_local_tokenizer())
    tok.chat_template = NO_TOOL_ROLE_TEMPLATE
    return tok

"""Prompt and response text for chat-template and plain (base-model) tokenizers."""

import pytest

from alignflow.data import ChatFormatter, parse_hh_dialogue

CONVERSATION = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hello world"},
    {"role": "user", "content": "how are you ?"},
]


def test_auto_uses_the_tokenizers_chat_template(chat_tokenizer):
    formatter = ChatFormatter(chat_tokenizer)
    assert formatter.uses_chat_template
    assert formatter.prompt_text(CONVERSATION[1:2]) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert formatter.response_text("fine") == "fine"


def test_auto_falls_back_to_the_plain_template(plain_tokenizer):
    formatter = ChatFormatter(plain_tokenizer)
    assert not formatter.uses_chat_template
    assert formatter.prompt_text(CONVERSATION) == (
        "\n\nBe kind.\n\nHuman: hello\n\nAssistant: hello world\n\nHuman: how are you ?\n\nAssistant:"
    )
    assert formatter.response_text("fine") == " fine"


def test_plain_prompt_plus_response_is_the_original_hh_dialogue():
    dialogue = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: fine"
    *prompt, final = parse_hh_dialogue(dialogue)
    formatter = ChatFormatter(None)
    assert formatter.prompt_text(prompt) + formatter.response_text(final["content"]) == dialogue


def test_none_continues_the_prompts_text_as_it_is(chat_tokenizer):
    formatter = ChatFormatter(chat_tokenizer, template="none")
    assert not formatter.uses_chat_template
    prompt = [{"role": "user", "content": "This film was"}]
    assert formatter.prompt_text(prompt) + formatter.response_text(" a delight.") == "This film was a delight."


def test_plain_can_be_forced_and_chat_requires_a_template(chat_tokenizer, plain_tokenizer):
    assert not ChatFormatter(chat_tokenizer, template="plain").uses_chat_template
    assert ChatFormatter(chat_tokenizer, template="chat").uses_chat_template
    with pytest.raises(ValueError, match="needs a tokenizer with a chat_template"):
        ChatFormatter(plain_tokenizer, template="chat")
    with pytest.raises(ValueError, match="unknown template"):
        ChatFormatter(plain_tokenizer, template="fancy")

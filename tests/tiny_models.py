"""Tiny random-init models and tokenizers built in code: no downloads, seconds to train.

Three shapes cover what alignflow supports: a Llama chat model (chat template, pad != EOS via an
existing special token), a GPT-2 base model (no pad token at all: one is added) and a BERT
encoder (reward backbone with [CLS]/[SEP] wrapping).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "Human: What is the capital of France? Assistant: The capital of France is Paris.",
    "How do I bake bread? Mix flour, water, yeast and salt, knead, let it rise and bake it.",
    "Please tell me a joke. Why did the chicken cross the road? To get to the other side.",
    "I cannot help with that request because it could hurt someone.",
    "Two plus two is four. Three plus five is eight. Numbers, words and sentences.",
] * 20

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _bpe(special: list[str], vocab_size: int = 256) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = __import__("tokenizers").decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        unk_token="<|endoftext|>", bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.eos_token_id, attention_dropout=0.1)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path, seed: int = 0) -> Path:
    tok = PreTrainedTokenizerFast(tokenizer_object=_bpe(["<|endoftext|>"]), unk_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=512,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_bert(path: Path, seed: int = 0) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    inner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    inner.normalizer = normalizers.BertNormalizer(lowercase=True)
    inner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    inner.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    inner.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", inner.token_to_id("[CLS]")),
                                                 ("[SEP]", inner.token_to_id("[SEP]"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="[PAD]", unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertForSequenceClassification(config).bert.save_pretrained(path)  # a plain encoder, like MiniLM
    tok.save_pretrained(path)
    return path

"""Write the benchmark's data once, so that both frameworks see the same rows (run in alignflow's venv).

Reads HH-RLHF with alignflow's own reader, tokenizes each pair with alignflow's encoder (the
model's chat template, EOS after the response) and keeps only the pairs that fit the length
budget with room to spare, so that neither framework truncates or drops a row (TRL's chat
template adds a newline after the closing ``<|im_end|>``; its RewardTrainer drops over-long pairs).

Writes, in ``--out``:

* ``pairs.jsonl``   ``{prompt: [messages], chosen: str, rejected: str}`` (reward model, DPO)
* ``sft.jsonl``     ``{prompt: [messages], completion: str}`` (the chosen dialogue)
* ``prompts.jsonl`` ``{prompt: [messages], prompt_ids: [int]}`` (RL and generation; the ids are
  alignflow's encoding: chat template + generation prompt)
* ``meta.json``     how it was made, token counts, the model's parameter counts and the
  dimensions the FLOP count needs (``flops.py``)

The kept rows are shuffled once (``--shuffle-seed``) and the same permutation is applied to the
three files, so row ``i`` of each is the same pair. Both frameworks then take the rows in file
order (TRL with a sequential sampler, alignflow with ``af_common.file_order``): this one shared
shuffle gives both the same rows in the same order at every step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from pathlib import Path

SLACK = 8  # tokens kept free under --max-length (TRL's template adds one or two tokens per sequence)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="HH-RLHF file (e.g. ../shared/data/hh-rlhf/helpful-base.jsonl.gz)")
    p.add_argument("--model", required=True, help="Hugging Face model folder (its tokenizer is used)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-prompt-length", type=int, default=192, help="RL / generation prompts")
    p.add_argument("--rows", type=int, default=512, help="pairs to keep")
    p.add_argument("--read", type=int, default=6000, help="rows to read from the source at most")
    p.add_argument("--shuffle-seed", type=int, default=0, help="the one shuffle of the kept rows both sides share")
    args = p.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from alignflow.data.formatting import ChatFormatter
    from alignflow.data.readers import read_preferences
    from alignflow.data.tokenize import PromptResponseEncoder
    from alignflow.models.loading import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    formatter = ChatFormatter(tokenizer)
    encoder = PromptResponseEncoder(tokenizer, formatter, max_length=args.max_length,
                                    max_prompt_length=args.max_length - 1)
    read = read_preferences(args.source, max_samples=args.read)
    budget = args.max_length - SLACK
    pairs, sft, prompts, lengths = [], [], [], []
    for example in read.examples:
        chosen, rejected = encoder.encode_pair(example.prompt, example.chosen, example.rejected)
        if chosen.truncated_prompt or chosen.truncated_response or rejected.truncated_response:
            continue
        if max(len(chosen.input_ids), len(rejected.input_ids)) > budget:
            continue
        if len(chosen.prompt_ids) > args.max_prompt_length:
            continue
        pairs.append({"prompt": example.prompt, "chosen": example.chosen, "rejected": example.rejected})
        sft.append({"prompt": example.prompt, "completion": example.chosen})
        prompts.append({"prompt": example.prompt, "prompt_ids": chosen.prompt_ids})
        lengths.append((len(chosen.prompt_ids), len(chosen.input_ids), len(rejected.input_ids)))
        if len(pairs) >= args.rows:
            break
    if len(pairs) < args.rows:
        raise SystemExit(f"only {len(pairs)} pairs fit {budget} tokens in the first {args.read} rows; "
                         f"raise --read or --max-length")

    order = list(range(len(pairs)))
    random.Random(args.shuffle_seed).shuffle(order)  # random.Random(int): the same order on every machine
    pairs, sft, prompts, lengths = ([rows[i] for i in order] for rows in (pairs, sft, prompts, lengths))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pairs", pairs), ("sft", sft), ("prompts", prompts)):
        with open(out / f"{name}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")

    config = AutoConfig.from_pretrained(args.model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())  # tied LM head counted once (as the embedding)
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    untied_head = head.weight.numel() if head is not None and head.weight is not model.get_input_embeddings().weight \
        else 0
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    meta = {
        "source": os.path.abspath(args.source), "model": os.path.abspath(args.model),
        "max_length": args.max_length, "max_prompt_length": args.max_prompt_length, "slack": SLACK,
        "rows": len(pairs), "rows_read": read.rows_read, "skipped_by_reader": len(read.issues),
        "pad_token": tokenizer.pad_token, "pad_token_id": tokenizer.pad_token_id,
        "eos_token": tokenizer.eos_token, "eos_token_id": tokenizer.eos_token_id,
        "mean_prompt_tokens": statistics.mean(x[0] for x in lengths),
        "mean_chosen_tokens": statistics.mean(x[1] for x in lengths),
        "mean_rejected_tokens": statistics.mean(x[2] for x in lengths),
        "params_total": total, "params_embedding": embedding, "params_non_embedding": total - embedding,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "shuffle_seed": args.shuffle_seed, "order": "kept rows shuffled once with random.Random(shuffle_seed)",
        # flops.model_flops: the body's matmul weights (embedding and LM head apart), the attention size
        "flop_dims": {"params_body": total - embedding - untied_head, "layers": text.num_hidden_layers,
                      "attention_dim": heads * head_dim, "hidden_size": text.hidden_size,
                      "vocab_size": text.vocab_size},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()

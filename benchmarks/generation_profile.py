"""Where a decoding step goes: the benchmark's generation (64 demo prompts in one batch, 64 new tokens forced
for every row, fp32, greedy with repetition penalty 1.3 as the evaluation decodes) under torch.profiler,
then the same with a static KV cache. Prints the op table and one JSON line (docs/performance.md).

    python benchmarks/generation_profile.py
    python benchmarks/generation_profile.py --batch-sizes 32,64,128,256

--batch-sizes: the evaluation's own decoding (`generate_texts`: greedy, repetition penalty 1.3, rows
that end early stop counting) over the suite's validation prompts at each decode batch size; prints
one JSON line per size with new tokens/s and the share of answers identical to the first size's.
"""

import argparse
import json
import platform
import time

import torch
from torch.profiler import ProfilerActivity, profile

from unlearnkit.data import load_demo
from unlearnkit.data.format import prompt_text
from unlearnkit.models import load_model

BATCH, NEW_TOKENS = 64, 64


def sweep(batch_sizes: list[int], n_prompts: int, new_tokens: int):
    from unlearnkit.data import load_suite
    from unlearnkit.distributed import cpu_name
    from unlearnkit.evaluation.generate import GenerationSettings, generate_texts

    model, tokenizer = load_model("default")
    suite = load_suite("standard:validation")
    prompts = [p["prompt"] for name in ("harmful", "normal", "safe") for p in suite[name]][:n_prompts]
    generate_texts(model, tokenizer, prompts[:4], max_new_tokens=4)
    first = None
    for size in batch_sizes:
        settings = GenerationSettings(max_new_tokens=new_tokens, repetition_penalty=1.3, batch_size=size)
        start = time.perf_counter()
        answers = generate_texts(model, tokenizer, prompts, settings)
        seconds = time.perf_counter() - start
        new = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        first = first or answers
        print(json.dumps({"name": "generate_batch_size", "batch_size": size, "prompts": len(prompts),
                          "max_new_tokens": new_tokens, "seconds": round(seconds, 1), "tokens_per_s": round(new / seconds, 1),
                          "identical_to_first_size": round(sum(a == b for a, b in zip(answers, first)) / len(prompts), 3),
                          "cpu": cpu_name(), "threads": torch.get_num_threads()}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-sizes", help="comma-separated decode batch sizes to time instead of the profile")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    ns = parser.parse_args()
    if ns.batch_sizes:
        return sweep([int(x) for x in ns.batch_sizes.split(",")], ns.prompts, ns.new_tokens)
    model, tokenizer = load_model("default")
    model.eval()
    prompts = [prompt_text(tokenizer, p["prompt"]) for p in load_demo("normal")[:BATCH]]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    settings = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.3,
                    pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    warm = {**settings, "max_new_tokens": 4, "min_new_tokens": 4}

    def timed(**extra):
        model.generate(**batch, **warm, **extra)
        start = time.perf_counter()
        out = model.generate(**batch, **settings, **extra)
        return time.perf_counter() - start, out

    with torch.no_grad():
        dynamic, tokens = timed()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(**batch, **settings)
        static, static_tokens = timed(cache_implementation="static")
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    total = sum(e.self_cpu_time_total for e in events)
    print(json.dumps({
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "batch": BATCH,
        "new_tokens": NEW_TOKENS, "prompt_width": batch["input_ids"].shape[1],
        "dynamic_s": round(dynamic, 2), "dynamic_tokens_per_s": round(BATCH * NEW_TOKENS / dynamic, 1),
        "static_s": round(static, 2), "static_tokens_per_s": round(BATCH * NEW_TOKENS / static, 1),
        "static_same_tokens": bool(torch.equal(tokens, static_tokens)),
        "self_time_share": {e.key: round(e.self_cpu_time_total / total, 3) for e in events
                            if e.self_cpu_time_total / total > 0.01}}))


if __name__ == "__main__":
    main()

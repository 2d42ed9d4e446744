"""unlearnkit benchmarks: one JSON object per line, {"name", "value", "unit", ...}.

    python benchmarks/run.py [--quick]

Each measurement runs in a fresh subprocess so that its peak RSS is its own. Names:
- matmul_peak_gflops    fp32 2048² matmul, best of several: the machine's practical peak
- train_mfu_full/_lora  SKU stage-1 steps on the default model in fp32: achieved model FLOP/s ÷ the fp32
                        peak. Model FLOPs count useful work only: per real (non-padding) token 6·N
                        (full) or 4·N (LoRA: frozen weights need no weight gradients) with N the
                        decoder's parameters without the embedding/LM head, plus the LM head's 6·V·d
                        (4·V·d) only at the positions whose logits a loss reads (answer positions), plus
                        2·N per reference token and 2·V·d per reference logit; attention's T² term is
                        left out (small at these lengths), so MFU is slightly understated
- train_mfu_*_bf16      the same steps under bf16 autocast, ÷ the bf16 matmul peak; only on a CPU with
                        native bf16 (avx512_bf16/AMX): emulated bf16 is not a figure worth printing
- packing               the same fp32 steps with and without packing (`--set packing=false`): step
                        time ratio and the positions each layout runs (padding included)
- generate_tokens_per_s batched greedy generation, 64 prompts × 64 new tokens
- peer_step_time_ratio  our SKU step ÷ the same step as a plain loop in the style of Yao et al.'s
                        public code (a forward pass per term, reference model as a full copy)
- peer_memory_ratio     peak RSS of ours ÷ the plain loop's, full fine-tuning
- lora_ref_memory_ratio peak RSS of a LoRA method with a reference model (NPO) ÷ the same
                        steps of a LoRA method without one (SimNPO): what the reference costs
                        (RSS after loading is no measure of one copy: safetensors weights are mmap'd)
- demo_seconds          `unlearnkit demo` end to end (quick: --max-steps 2)
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_matmul(quick):
    import torch

    def peak(dtype):
        n, best = 2048, float("inf")
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(3 if quick else 10):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        return round(2 * n ** 3 / best / 1e9, 1)

    from unlearnkit.distributed import native_bf16

    # Emulated bf16 runs near 0.3 GFLOP/s on AVX2: minutes of 2048³ products for a figure nothing uses.
    return {"name": "matmul_peak_gflops", "value": peak(torch.float32), "unit": "GFLOP/s", "dtype": "float32",
            "bf16_gflops": peak(torch.bfloat16) if native_bf16() else None, "threads": torch.get_num_threads()}


def _sku_batches(tokenizer, steps, batch_size=4):
    from unlearnkit.data import GroupCollator, UnlearnDataset
    from unlearnkit.demo import demo_sets

    forget, retain, _, _ = demo_sets()
    ds = UnlearnDataset(tokenizer, forget, retain, max_length=128, mismatch_pool="forget", mismatch_k=1, seed=0)
    collate = GroupCollator(tokenizer.pad_token_id)
    return [collate([ds[(s * batch_size + i) % len(ds)] for i in range(batch_size)]) for s in range(steps)]


def _tokens(batch, groups):
    return sum(int(batch[f"{g}_attention_mask"].sum()) for g in groups)


def _answer_positions(batch, groups):
    from unlearnkit.data.format import IGNORE

    return sum(int((batch[f"{g}_labels"][:, 1:] != IGNORE).sum()) for g in groups)


def _layout_positions(batch, groups):
    """(positions the padded layout runs, positions the packed layout runs) for one step."""
    import torch

    from unlearnkit.methods.base import PackedRows

    mask = torch.cat([batch[f"{g}_attention_mask"] for g in groups])
    packed = PackedRows(mask.sum(1), torch.zeros(len(mask), 1, dtype=torch.long))
    return mask.numel(), packed.rows * packed.width


def measure_train(mode, quick):
    """Steps of our SKU trainer (mode full/lora, -bf16 for autocast) or of the plain peer loop (mode peer)."""
    import torch

    from unlearnkit.methods import UnlearnArguments, build_trainer
    from unlearnkit.losses import answer_nll, token_kl
    from unlearnkit.models import load_model

    before = rss_mb()
    model, tokenizer = load_model("default")
    one_copy = rss_mb() - before
    head = model.get_output_embeddings().weight
    vocab_dim = head.numel()  # V·d
    n_body = sum(p.numel() for p in model.parameters()) - vocab_dim * (1 if model.config.tie_word_embeddings else 2)
    steps = 3 if quick else 8
    batches = _sku_batches(tokenizer, steps + 1)
    if mode == "peer":  # Yao et al.'s loop: separate passes per term, θ₀ as a full second copy
        import copy

        ref = copy.deepcopy(model).eval().requires_grad_(False)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)

        def step(batch):
            def run(m, g):
                return m(input_ids=batch[f"{g}_input_ids"], attention_mask=batch[f"{g}_attention_mask"]).logits

            gd = answer_nll(run(model, "forget"), batch["forget_labels"]).mean()
            rd = answer_nll(run(model, "mismatch"), batch["mismatch_labels"]).mean()
            with torch.no_grad():
                ref_logits = run(ref, "retain")
            kl = token_kl(ref_logits, run(model, "retain"), batch["retain_labels"])
            loss = 2.5 * gd + 2.5 * rd - torch.clamp(kl, max=5.0).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
    else:  # ours; built only here, so the peer process holds exactly its own two copies
        from unlearnkit.demo import demo_sets

        forget, retain, _, _ = demo_sets()
        args = UnlearnArguments(output_dir=tempfile.mkdtemp(), method="sku", lora=mode.startswith("lora"), mismatch_k=1,
                                bf16=mode.endswith("bf16"), packing=not mode.endswith("padded"), learning_rate=2e-5,
                                max_steps=steps, save_strategy="no", disable_tqdm=True)
        trainer = build_trainer(model, tokenizer, forget, retain, args)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        model = trainer.accelerator.prepare(trainer.model)  # as Trainer.train does: this adds bf16 autocast
        model.train()
        trainer.current_gradient_accumulation_steps = 1  # set per step by Trainer's own loop

        def step(batch):
            trainer.training_step(model, batch)  # what Trainer runs: autocast, backward through accelerate
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()

    step(batches[0])  # warm-up
    groups = ["forget", "mismatch", "retain"]
    start, flops, trained, padded, packed = time.perf_counter(), 0, 0, 0, 0
    per_token = 4 if mode.startswith("lora") else 6
    for batch in batches[1:]:
        step(batch)
        tokens = _tokens(batch, groups)
        trained += tokens
        flops += per_token * (n_body * tokens + vocab_dim * _answer_positions(batch, groups))
        flops += 2 * (n_body * _tokens(batch, ["retain"]) + vocab_dim * _answer_positions(batch, ["retain"]))
        layout = _layout_positions(batch, groups)
        padded, packed = padded + layout[0], packed + layout[1]
    seconds = time.perf_counter() - start
    return {"step_seconds": seconds / steps, "tokens_per_s": trained / seconds, "flops_per_s": flops / seconds,
            "peak_rss_mb": rss_mb(), "one_copy_mb": one_copy, "base_rss_mb": before,
            "positions": {"real": trained / steps, "padded_layout": padded / steps, "packed_layout": packed / steps}}


def measure_generate(quick):
    from unlearnkit.data import load_demo
    from unlearnkit.evaluation.generate import GenerationSettings, generate_texts
    from unlearnkit.models import load_model

    model, tokenizer = load_model("default")
    prompts = [p["prompt"] for p in load_demo("normal")[:64]]
    settings = GenerationSettings(max_new_tokens=64, batch_size=64)
    generate_texts(model, tokenizer, prompts[:4], GenerationSettings(max_new_tokens=4))
    start = time.perf_counter()
    out = generate_texts(model, tokenizer, prompts, settings)
    seconds = time.perf_counter() - start
    new = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in out)
    return {"name": "generate_tokens_per_s", "value": round(new / seconds, 1), "unit": "tokens/s",
            "prompts": len(prompts), "batch_size": 64, "dtype": settings.dtype, "seconds": round(seconds, 1)}


def measure_lora_memory(method, quick):
    """Peak RSS of a few LoRA steps of `method` (npo: reference model; simnpo: none) on the same data."""
    from unlearnkit.data import load_demo
    from unlearnkit.methods import UnlearnArguments, build_trainer
    from unlearnkit.models import load_model

    model, tokenizer = load_model("default")
    args = UnlearnArguments(output_dir=tempfile.mkdtemp(), method=method, max_steps=2 if quick else 4,
                            per_device_train_batch_size=4, max_length=128, save_strategy="no", disable_tqdm=True)
    trainer = build_trainer(model, tokenizer, load_demo("harmful")[:16], load_demo("normal")[:16], args)
    trainer.remove_callback(__import__("transformers").trainer_callback.PrinterCallback)
    trainer.train()
    return {"peak_rss_mb": rss_mb()}


def child(kind, quick):
    import torch

    torch.manual_seed(0)
    if kind.startswith("memory-"):
        out = measure_lora_memory(kind[len("memory-"):], quick)
    else:
        result = {"matmul": measure_matmul, "generate": measure_generate}.get(kind)
        out = result(quick) if result else measure_train(kind, quick)
    print("RESULT " + json.dumps(out))


def run_child(kind, quick):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, HERE, "--child", kind] + (["--quick"] if quick else []),
                          capture_output=True, text=True, env=env)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"benchmark {kind} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--skip-demo", action="store_true")
    ns = parser.parse_args()
    if ns.child:
        return child(ns.child, ns.quick)
    from unlearnkit.distributed import cpu_name, native_bf16

    machine = {"cpus": os.cpu_count(), "platform": sys.platform, "cpu": cpu_name(), "native_bf16": native_bf16()}
    peak = run_child("matmul", ns.quick)
    print(json.dumps({**peak, **machine}), flush=True)
    modes = ["full", "lora", "full-padded", "lora-padded"] + (["full-bf16", "lora-bf16"] if machine["native_bf16"] else [])
    runs = {mode: run_child(mode, ns.quick) for mode in modes + ["peer"]}
    for mode in modes:
        if mode.endswith("padded"):
            continue
        r, bf16 = runs[mode], mode.endswith("bf16")
        line = {"name": f"train_mfu_{mode.replace('-', '_')}",
                "value": round(r["flops_per_s"] / (peak["bf16_gflops" if bf16 else "value"] * 1e9), 3),
                "unit": f"fraction of the {'bf16' if bf16 else 'fp32'} matmul peak", "tokens_per_s": round(r["tokens_per_s"], 1),
                "step_seconds": round(r["step_seconds"], 2), "peak_rss_mb": round(r["peak_rss_mb"]), "cpu": machine["cpu"]}
        print(json.dumps(line), flush=True)
    for kind in ("full", "lora"):
        packed, padded = runs[kind], runs[f"{kind}-padded"]
        print(json.dumps({"name": f"packing_step_ratio_{kind}", "value": round(packed["step_seconds"] / padded["step_seconds"], 3),
                          "unit": "packed step / padded step (lower is better)", "positions_per_step": packed["positions"],
                          "cpu": machine["cpu"]}), flush=True)
    print(json.dumps({"name": "peer_step_time_ratio", "value": round(runs["full"]["step_seconds"] / runs["peer"]["step_seconds"], 3),
                      "unit": "ours / peer (lower is better)", "ours_s": round(runs["full"]["step_seconds"], 2),
                      "peer_s": round(runs["peer"]["step_seconds"], 2), "mode": "full fine-tune, same model and batch"}), flush=True)
    print(json.dumps({"name": "peer_memory_ratio", "value": round(runs["full"]["peak_rss_mb"] / runs["peer"]["peak_rss_mb"], 3),
                      "unit": "ours / peer peak RSS", "ours_mb": round(runs["full"]["peak_rss_mb"]),
                      "peer_mb": round(runs["peer"]["peak_rss_mb"])}), flush=True)
    with_ref, without = run_child("memory-npo", ns.quick), run_child("memory-simnpo", ns.quick)
    print(json.dumps({"name": "lora_ref_memory_ratio", "value": round(with_ref["peak_rss_mb"] / without["peak_rss_mb"], 3),
                      "unit": "peak RSS, NPO (reference = adapter disabled) / SimNPO (no reference), LoRA",
                      "npo_mb": round(with_ref["peak_rss_mb"]), "simnpo_mb": round(without["peak_rss_mb"])}), flush=True)
    print(json.dumps(run_child("generate", ns.quick)), flush=True)
    if not ns.skip_demo:
        out = tempfile.mkdtemp()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--out", os.path.join(out, "demo"), "--overwrite"]
                       + (["--max-steps", "2"] if ns.quick else []), check=True, capture_output=True)
        print(json.dumps({"name": "demo_seconds", "value": round(time.perf_counter() - start, 1), "unit": "s",
                          "quick": ns.quick}), flush=True)


if __name__ == "__main__":
    main()

"""unlearnkit benchmarks: one JSON object per line, {"name", "value", "unit", ...}.

    python benchmarks/run.py [--quick] [--only generate]

Each measurement runs in a fresh subprocess so that its peak RSS is its own. Names:
- matmul_peak_gflops    fp32 2048² matmul, best of several: the machine's practical peak
- train_mfu_full/_lora  SKU stage-1 steps on the default model in fp32: achieved model FLOP/s ÷ the fp32
                        peak. Model FLOPs count useful work only: per useful token (real, not padding,
                        and every prefix that sequences share counted once) 6·N
                        (full) or 4·N (LoRA: frozen weights need no weight gradients) with N the
                        decoder's parameters without the embedding/LM head, plus the LM head's 6·V·d
                        (4·V·d) only at the positions whose logits a loss reads (answer positions), plus
                        2·N per reference token and 2·V·d per reference logit; attention's T² term is
                        left out (small at these lengths), so MFU is slightly understated
- train_mfu_*_bf16      the same steps under bf16 autocast, ÷ the bf16 matmul peak; only on a CPU with
                        native bf16 (avx512_bf16/AMX): emulated bf16 is not a figure worth printing
- packing               the same fp32 steps with and without packing (`--set packing=false`): step
                        time ratio and the positions each layout runs (padding included)
- shared_prefix_step_ratio_llmu  LLMU's step with shared prefixes once per packed row ÷ the same step
                        with `share_prefix=False` (mode full-noshare), and the same for peak RSS
- generate_tokens_per_s batched greedy generation, 64 prompts × 64 new tokens
- generate_mfu          the same run's useful model FLOP/s ÷ the fp32 matmul peak: per new token (up to its
                        answer's end) 2·N for the decoder's N parameters plus 2·V·d for the LM head on the
                        last position; prompt tokens, attention and the rows `generate` keeps computing after
                        they ended are not counted, so this is the share of the peak that became answers
- peer_step_time_ratio  per method, our full fine-tuning step ÷ the peer's step on the same examples:
                        method "llmu": a port of Yao et al.'s unlearn_harm.py step (4 harmful + 4 normal
                        prompts, 5 random normal answers per harmful prompt; "### Question/Answer" text,
                        a forward pass per term with full-vocabulary logits, θ₀ as a second copy; each
                        group padded to its own longest sequence — kinder than the original's padding
                        to the tokenizer's maximum length); method "sku": SKU's three losses written
                        as the same kind of plain loop (SKU's authors published no code)
- peer_memory_ratio     peak RSS of ours ÷ the peer's, the same runs
- peer_ratios_llmu_activation_checkpointing  both LLMU peer ratios with activations recomputed in the
                        backward pass (`--set activation_checkpointing=true`): memory bought with time
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


# What each timed method reads per step, as its peer's recipe has it: SKU one disassociated answer
# per harmful prompt; LLMU (Yao et al.) five random normal answers per harmful prompt.
MISMATCH = {"sku": ("forget", 1), "llmu": ("retain", 5)}
BATCH, MAX_LENGTH = 4, 128


def _demo_rows():
    from unlearnkit.demo import demo_sets

    forget, retain, _, _ = demo_sets()
    return forget, retain


def _batches(tokenizer, steps, method, system_prompt=None):
    from unlearnkit.data import GroupCollator, UnlearnDataset

    forget, retain = _demo_rows()
    pool, k = MISMATCH[method]
    ds = UnlearnDataset(tokenizer, forget, retain, max_length=MAX_LENGTH, mismatch_pool=pool, mismatch_k=k, seed=0,
                        system_prompt=system_prompt)
    collate = GroupCollator(tokenizer.pad_token_id)
    return [collate([ds[(s * BATCH + i) % len(ds)] for i in range(BATCH)]) for s in range(steps)]


def _yao_batches(tokenizer, steps):
    """Yao et al.'s data path, rewritten: "### Question: q\n ### Answer: a" text, the answer's start found
    by tokenizing the question part, K = 5 normal answers drawn once per batch for every harmful prompt."""
    import random

    import torch

    forget, retain = _demo_rows()
    answers = [r["response"] for r in retain]
    draw = random.Random(8888)

    def group(pairs):
        rows = [tokenizer(f"### Question: {q}\n ### Answer: {a}", truncation=True, max_length=MAX_LENGTH)["input_ids"]
                for q, a in pairs]
        starts = [len(tokenizer(f"### Question: {q}\n ### Answer: ")["input_ids"]) - 1 for q, _ in pairs]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask, "start": torch.tensor(starts)}

    out = []
    for s in range(steps):
        bad = [forget[(s * BATCH + i) % len(forget)] for i in range(BATCH)]
        normal = [retain[(s * BATCH + i) % len(retain)] for i in range(BATCH)]
        random_answers = draw.sample(answers, 5)
        out.append({"bad": group([(r["prompt"], r["response"]) for r in bad]),
                    "random": group([(r["prompt"], a) for r in bad for a in random_answers]),
                    "normal": group([(r["prompt"], r["response"]) for r in normal])})
    return out


def _yao_step(model, ref, opt):
    """One step of unlearn_harm.py's loop: bad_weight 0.5 · GA + random_weight 1 · GD on random answers
    + normal_weight 1 · forward KL to θ₀ over every position; three forward passes, one backward."""
    import torch

    def answer_loss(g, sign):
        logits = model(input_ids=g["input_ids"], attention_mask=g["attention_mask"]).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), g["input_ids"][:, 1:], reduction="none")
        weight = g["attention_mask"].clone()
        for i, start in enumerate(g["start"]):
            weight[i, :start] = 0  # token `start` is the first answer token (the prefix ends in a space)
        weight = weight[:, 1:] / weight[:, 1:].sum(1, keepdim=True).clamp(min=1)
        return (sign * nll * weight).sum(1).mean()

    def step(batch):
        normal = batch["normal"]
        logits_q = model(input_ids=normal["input_ids"], attention_mask=normal["attention_mask"]).logits
        with torch.no_grad():
            logits_p = ref(input_ids=normal["input_ids"], attention_mask=normal["attention_mask"]).logits
        kl = -(torch.softmax(logits_p, -1) * torch.log(torch.softmax(logits_q, -1) + 1e-12)).sum(-1).mean()
        loss = 0.5 * answer_loss(batch["bad"], -1) + answer_loss(batch["random"], 1) + kl
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def _tokens(batch, groups):
    return sum(int(batch[f"{g}_attention_mask"].sum()) for g in groups)


def _step(batch, groups):
    """The step's sequences as forward_groups concatenates them: ids, attention mask, labels."""
    import torch

    return tuple(torch.cat([batch[f"{g}_{part}"] for g in groups]) for part in ("input_ids", "attention_mask", "labels"))


def _useful_tokens(batch, groups):
    """Real tokens, with every prefix that sequences share (the system turn; a prompt under its K
    random answers) counted once: computing it again per sequence is redundant work, whichever
    layout does it."""
    from unlearnkit.methods.base import distinct_tokens

    return distinct_tokens(*_step(batch, groups))


def _answer_positions(batch, groups):
    from unlearnkit.data.format import IGNORE

    return sum(int((batch[f"{g}_labels"][:, 1:] != IGNORE).sum()) for g in groups)


def _layout_positions(batch, groups):
    """Positions one step runs: padded, packed, packed with shared prefixes once per row."""
    from unlearnkit.methods.base import PackedRows, answer_positions

    ids, mask, labels = _step(batch, groups)
    positions = answer_positions(labels)[0]
    packed = PackedRows.for_step(ids, mask, labels, positions)
    shared = PackedRows.for_step(ids, mask, labels, positions, share=True)
    return mask.numel(), packed.rows * packed.width, shared.rows * shared.width


def body_and_head(model) -> tuple[int, int]:
    """(N, V·d): the decoder's parameters without the embedding and LM head, and the LM head's size."""
    vocab_dim = model.get_output_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - vocab_dim * (1 if model.config.tie_word_embeddings else 2), vocab_dim


def measure_train(kind, quick):
    """Steps of one method (kind METHOD:MODE): our trainer (mode full/lora, -padded without packing, -bf16
    under autocast) or the method's peer loop (mode peer)."""
    import torch

    from unlearnkit.methods import UnlearnArguments, build_trainer
    from unlearnkit.losses import answer_nll, token_kl
    from unlearnkit.models import load_model

    method, _, mode = kind.partition(":")
    system_prompt = "" if mode.endswith("-nosystem") else None  # an empty system turn instead of the template's own
    mode = mode.removesuffix("-nosystem")
    share_prefix = not mode.endswith("-noshare")  # each sequence computes its own copy of the system turn
    mode = mode.removesuffix("-noshare")
    checkpointing = mode.endswith("-ckpt")  # recompute activations in the backward pass instead of keeping them
    mode = mode.removesuffix("-ckpt")
    before = rss_mb()
    model, tokenizer = load_model("default")
    one_copy = rss_mb() - before
    n_body, vocab_dim = body_and_head(model)
    steps = 3 if quick else 8
    if mode == "peer":  # separate passes per term, θ₀ as a full second copy
        import copy

        ref = copy.deepcopy(model).eval().requires_grad_(False)
    if mode == "peer" and method == "llmu":  # the port of Yao et al.'s step, on its own data path
        peer_batches = _yao_batches(tokenizer, steps + 1)
        seconds = _timed(_yao_step(model, ref, torch.optim.AdamW(model.parameters(), lr=2e-6)), peer_batches)
        groups = [b[g]["attention_mask"] for b in peer_batches[1:] for g in ("bad", "random", "normal")]
        return {"step_seconds": seconds / steps, "peak_rss_mb": rss_mb(),
                "positions": {"real": sum(int(m.sum()) for m in groups) / steps,
                              "padded_layout": sum(m.numel() for m in groups) / steps}}
    batches = _batches(tokenizer, steps + 1, method, system_prompt)
    if mode == "peer":  # SKU's losses as the same kind of plain loop
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
        forget, retain = _demo_rows()
        args = UnlearnArguments(output_dir=tempfile.mkdtemp(), method=method, lora=mode.startswith("lora"),
                                mismatch_k=MISMATCH[method][1], per_device_train_batch_size=BATCH, max_length=MAX_LENGTH,
                                bf16=mode.endswith("bf16"), packing=not mode.endswith("padded"), learning_rate=2e-5,
                                max_steps=steps, save_strategy="no", disable_tqdm=True, system_prompt=system_prompt,
                                share_prefix=share_prefix, activation_checkpointing=checkpointing)
        trainer = build_trainer(model, tokenizer, forget, retain, args)
        if checkpointing:  # as Trainer.train does before its first step
            trainer.model.activation_checkpointing_enable()
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        model = trainer.accelerator.prepare(trainer.model)  # as Trainer.train does: this adds bf16 autocast
        model.train()
        trainer.current_gradient_accumulation_steps = 1  # set per step by Trainer's own loop

        def step(batch):
            trainer.training_step(model, batch)  # what Trainer runs: autocast, backward through accelerate
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()

    seconds = _timed(step, batches)
    groups = ["forget", "mismatch", "retain"]
    flops, trained, useful, padded, packed, shared = 0, 0, 0, 0, 0, 0
    per_token = 4 if mode.startswith("lora") else 6
    for batch in batches[1:]:
        trained += _tokens(batch, groups)
        useful += _useful_tokens(batch, groups)
        flops += per_token * (n_body * _useful_tokens(batch, groups) + vocab_dim * _answer_positions(batch, groups))
        flops += 2 * (n_body * _useful_tokens(batch, ["retain"]) + vocab_dim * _answer_positions(batch, ["retain"]))
        layout = _layout_positions(batch, groups)
        padded, packed, shared = padded + layout[0], packed + layout[1], shared + layout[2]
    return {"step_seconds": seconds / steps, "tokens_per_s": trained / seconds, "flops_per_s": flops / seconds,
            "peak_rss_mb": rss_mb(), "one_copy_mb": one_copy, "base_rss_mb": before,
            "positions": {"real": trained / steps, "useful": useful / steps, "padded_layout": padded / steps,
                          "packed_layout": packed / steps, "packed_shared_prefix_layout": shared / steps}}


def _timed(step, batches) -> float:
    """Seconds for step() over batches[1:], after one untimed warm-up step on batches[0]."""
    step(batches[0])
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    return time.perf_counter() - start


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
    body, head = body_and_head(model)
    return {"name": "generate_tokens_per_s", "value": round(new / seconds, 1), "unit": "tokens/s",
            "prompts": len(prompts), "batch_size": 64, "dtype": settings.dtype, "seconds": round(seconds, 1),
            "flops_per_token": 2 * (body + head)}


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


def report_generate(peak, machine, quick):
    gen = run_child("generate", quick)
    print(json.dumps({**gen, "cpu": machine["cpu"]}), flush=True)
    print(json.dumps({"name": "generate_mfu", "value": round(gen["value"] * gen["flops_per_token"] / (peak["value"] * 1e9), 3),
                      "unit": "fraction of the fp32 matmul peak", "tokens_per_s": gen["value"], "cpu": machine["cpu"]}),
          flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--only", choices=["generate"], help="only the matmul peak and this measurement")
    ns = parser.parse_args()
    if ns.child:
        return child(ns.child, ns.quick)
    from unlearnkit.distributed import cpu_name, native_bf16

    machine = {"cpus": os.cpu_count(), "platform": sys.platform, "cpu": cpu_name(), "native_bf16": native_bf16()}
    peak = run_child("matmul", ns.quick)
    print(json.dumps({**peak, **machine}), flush=True)
    if ns.only == "generate":
        return report_generate(peak, machine, ns.quick)
    modes = ["full", "lora", "full-padded", "lora-padded"] + (["full-bf16", "lora-bf16"] if machine["native_bf16"] else [])
    runs = {mode: run_child(f"sku:{mode}", ns.quick) for mode in modes + ["peer"]}
    llmu = {mode: run_child(f"llmu:{mode}", ns.quick) for mode in ("full", "full-noshare", "full-nosystem", "full-ckpt", "peer")}
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
    shared, own = llmu["full"], llmu["full-noshare"]
    print(json.dumps({"name": "shared_prefix_step_ratio_llmu", "value": round(shared["step_seconds"] / own["step_seconds"], 3),
                      "unit": "step with the shared prefix once per row / with a copy per sequence (lower is better)",
                      "memory_ratio": round(shared["peak_rss_mb"] / own["peak_rss_mb"], 3),
                      "positions_per_step": shared["positions"], "cpu": machine["cpu"]}), flush=True)
    for method, pair in (("llmu", llmu), ("sku", runs)):
        ours, peer = pair["full"], pair["peer"]
        same = {"method": method, "mode": "full fine-tune, fp32, same model and examples per step", "cpu": machine["cpu"]}
        print(json.dumps({"name": "peer_step_time_ratio", "value": round(ours["step_seconds"] / peer["step_seconds"], 3),
                          "unit": "ours / peer (lower is better)", "ours_s": round(ours["step_seconds"], 2),
                          "peer_s": round(peer["step_seconds"], 2), "ours_positions": ours["positions"],
                          "peer_positions": peer["positions"], **same}), flush=True)
        print(json.dumps({"name": "peer_memory_ratio", "value": round(ours["peak_rss_mb"] / peer["peak_rss_mb"], 3),
                          "unit": "ours / peer peak RSS", "ours_mb": round(ours["peak_rss_mb"]),
                          "peer_mb": round(peer["peak_rss_mb"]), **same}), flush=True)
    # The chat template's default system prompt rides in every training sequence; the peer has none.
    bare, peer = llmu["full-nosystem"], llmu["peer"]
    print(json.dumps({"name": "peer_ratios_llmu_without_system_prompt", "step_time_ratio": round(bare["step_seconds"] / peer["step_seconds"], 3),
                      "memory_ratio": round(bare["peak_rss_mb"] / peer["peak_rss_mb"], 3), "ours_s": round(bare["step_seconds"], 2),
                      "ours_mb": round(bare["peak_rss_mb"]), "ours_positions": bare["positions"],
                      "with_system_prompt_positions": llmu["full"]["positions"], "cpu": machine["cpu"],
                      "note": "--set system_prompt= (an empty system turn); generation still uses the template's default"}), flush=True)
    # Memory for time: activations recomputed in the backward pass (--set activation_checkpointing=true)
    ckpt = llmu["full-ckpt"]
    print(json.dumps({"name": "peer_ratios_llmu_activation_checkpointing", "step_time_ratio": round(ckpt["step_seconds"] / peer["step_seconds"], 3),
                      "memory_ratio": round(ckpt["peak_rss_mb"] / peer["peak_rss_mb"], 3), "ours_s": round(ckpt["step_seconds"], 2),
                      "ours_mb": round(ckpt["peak_rss_mb"]), "cpu": machine["cpu"]}), flush=True)
    with_ref, without = run_child("memory-npo", ns.quick), run_child("memory-simnpo", ns.quick)
    print(json.dumps({"name": "lora_ref_memory_ratio", "value": round(with_ref["peak_rss_mb"] / without["peak_rss_mb"], 3),
                      "unit": "peak RSS, NPO (reference = adapter disabled) / SimNPO (no reference), LoRA",
                      "npo_mb": round(with_ref["peak_rss_mb"]), "simnpo_mb": round(without["peak_rss_mb"])}), flush=True)
    report_generate(peak, machine, ns.quick)
    if not ns.skip_demo:
        out = tempfile.mkdtemp()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--out", os.path.join(out, "demo"), "--overwrite"]
                       + (["--max-steps", "2"] if ns.quick else []), check=True, capture_output=True)
        print(json.dumps({"name": "demo_seconds", "value": round(time.perf_counter() - start, 1), "unit": "s",
                          "quick": ns.quick}), flush=True)


if __name__ == "__main__":
    main()

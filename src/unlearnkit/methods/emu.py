"""Evaluative-model unlearning (Chen et al. 2024, arXiv 2404.16841), as read in docs/methods.md.

Only the paper's abstract is public; this is our concrete reading, documented as such:
1. a judge selects the dialogues that need unlearning (θ₀'s own sampled answers, plus any given);
2. L_neg = −JS(p_θ ‖ p_θ₀) on those bad answers — bounded by ln 2, unlike gradient ascent;
3. L_pos = NLL of y*, the desirable answer nearest the cluster mean of its category's desirable
   answers (judge-approved answers and refusals), embedded with all-MiniLM-L6-v2;
4. L_nor = KL(p_θ₀ ‖ p_θ) on normal prompts;
and training stops early once the judge's rate (its main verdict, compliance for our default judge)
on the validation split of the forget prompts reaches a target. `emu_judge` picks that judge; when it
is also the judge that reports, the evaluation's settings say so (it then grades its own target).
"""

from __future__ import annotations

import numpy as np
from transformers import TrainerCallback

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_nll, token_js, token_kl
from unlearnkit.methods.registry import register

MIN_CLUSTER = 5


def cluster_targets(desirable: list[dict]) -> dict[str, str]:
    """{category: y*}: per category with ≥ 5 members, else the global cluster ("" key)."""
    from unlearnkit.evaluation.embeddings import embed

    vectors = embed([d["response"] for d in desirable])

    def nearest_to_mean(idx):
        mean = vectors[idx].mean(0)
        return desirable[idx[int(np.argmax(vectors[idx] @ mean))]]["response"]

    targets = {"": nearest_to_mean(list(range(len(desirable))))}
    by_category: dict[str, list[int]] = {}
    for i, d in enumerate(desirable):
        by_category.setdefault(d.get("category", ""), []).append(i)
    for category, idx in by_category.items():
        if category and len(idx) >= MIN_CLUSTER:
            targets[category] = nearest_to_mean(idx)
    return targets


class HarmfulRateStop(TrainerCallback):
    """Every `every` steps: greedy answers to held-out forget prompts, judged; stop at the target."""

    def __init__(self, tokenizer, prompts: list[str], judge, every: int, target: float, threshold: float = 0.5):
        self.tokenizer, self.prompts, self.judge = tokenizer, prompts, judge
        self.every, self.target, self.threshold = every, target, threshold
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.prompts or self.every <= 0 or state.global_step % self.every:
            return
        from unlearnkit.evaluation.evaluate import judged_harmful
        from unlearnkit.evaluation.generate import GenerationSettings

        rate = float(np.mean(judged_harmful(model, self.tokenizer, self.prompts, self.judge,
                                            GenerationSettings(max_new_tokens=48), self.threshold)))
        self.history.append((state.global_step, rate))
        if rate <= self.target:
            control.should_training_stop = True


@register("emu")
class EMUTrainer(UnlearnTrainer):
    description = "Evaluative-model unlearning: judge-selected bad answers pushed away (bounded JS), pulled to the desirable cluster mean"
    paper = "Chen et al. 2024, arXiv 2404.16841 (our reading of the abstract; see docs/methods.md)"
    needs_reference = True

    @classmethod
    def prepare(cls, model, tokenizer, forget, retain, args):
        """Judge θ₀'s sampled answers (and the given ones); returns (bad dialogues, y* per dialogue, callbacks)."""
        from unlearnkit.evaluation.evaluate import sample_and_judge
        from unlearnkit.evaluation.generate import GenerationSettings
        from unlearnkit.data.split import split_pairs
        from unlearnkit.evaluation.judge import load_judge, main_verdict
        from unlearnkit.methods.train import REFUSALS

        judge = load_judge(args.emu_judge)
        verdict = main_verdict(judge)
        prompts = list({p["prompt"]: p for p in forget}.values())
        # The early stop watches the validation split of the forget prompts (the shared hash split),
        # never prompts it trains on; evaluation reports on test prompts it never sees at all.
        parts = split_pairs(prompts, validation=0.1, test=0.0) if len(prompts) >= 10 else {"train": prompts, "validation": []}
        validation, train_prompts = parts["validation"], parts["train"]
        keep = {p["prompt"] for p in train_prompts}
        dialogues = sample_and_judge(model, tokenizer, train_prompts, judge, args.emu_samples,
                                     GenerationSettings(max_new_tokens=64, do_sample=True, temperature=0.8, seed=args.seed))
        given = [p for p in forget if p["prompt"] in keep and p.get("response")]
        dialogues += [{**d, "judge_score": s} for d, s in
                      zip(given, judge.score([d["prompt"] for d in given], [d["response"] for d in given], verdict=verdict))]
        bad = [d for d in dialogues if d["judge_score"] >= 0.5]
        desirable = [d for d in dialogues if d["judge_score"] < 0.5]
        desirable += [{**p, "response": REFUSALS[i % len(REFUSALS)]} for i, p in enumerate(train_prompts)]
        if not bad:
            bad = [p for p in forget if p["prompt"] in keep]  # nothing judged harmful: fall back to the given pairs
        targets = cluster_targets(desirable)
        positive = [targets.get(d.get("category", ""), targets[""]) for d in bad]
        stop = HarmfulRateStop(tokenizer, [p["prompt"] for p in validation], judge, args.emu_eval_every, args.emu_target_rate)
        return bad, positive, [stop]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.args
        out = self.forward_groups(model, inputs, ["forget", "positive", "retain"])
        ref = self.reference_forward(model, inputs, ["forget", "retain"])
        js = token_js(ref["forget"].logits, out["forget"].logits, out["forget"].labels).mean()
        pos = answer_nll(out["positive"].logits, out["positive"].labels).mean()
        nor = token_kl(ref["retain"].logits, out["retain"].logits, out["retain"].labels).mean()
        self.record(js=js, pos=pos, nor=nor)
        return -a.emu_neg_weight * js + a.emu_pos_weight * pos + a.emu_nor_weight * nor

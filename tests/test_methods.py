"""Each method's loss against a hand computation on a 2-example batch, and its direction of travel.

The hand computations run each group through the model separately and reduce with explicit
loops, so they share nothing with losses.py or the one-pass forward_groups."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_model
from unlearnkit.methods import UnlearnArguments, build_trainer, finish

IGN = -100


def args_for(tmp_path, method, **kw):
    base = dict(output_dir=str(tmp_path / "ckpt"), method=method, per_device_train_batch_size=2, max_steps=3,
                save_strategy="no", mismatch_k=2, disable_tqdm=True, learning_rate=1e-2, rmu_layer=1, seed=0)
    base.update(kw)
    return UnlearnArguments(**base)


def trainer_and_batch(tmp_path, tokenizer, pairs, method, lora=True, **kw):
    forget, retain = pairs
    trainer = build_trainer(make_tiny_model(tokenizer), tokenizer, forget[:4], retain[:4], args_for(tmp_path, method, lora=lora, **kw))
    with torch.no_grad():  # make θ differ from θ₀ so reference terms are not trivially zero
        for name, p in trainer.model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p)) if "lora_A" not in name else None
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    return trainer, batch


def logits_of(model, batch, group, reference=None):
    ids, mask = batch[f"{group}_input_ids"], batch[f"{group}_attention_mask"]
    with torch.no_grad():
        if reference == "adapter_off":
            with model.disable_adapter():
                return model(input_ids=ids, attention_mask=mask).logits
        target = reference if reference is not None else model
        return target(input_ids=ids, attention_mask=mask, output_hidden_states=False).logits


def per_example(logits, labels, fn):
    """fn(logits_row_t, target_token) per answer token; mean and sum per sequence."""
    means, sums = [], []
    for b in range(labels.shape[0]):
        vals = [fn(b, t) for t in range(1, labels.shape[1]) if labels[b, t] != IGN]
        means.append(sum(vals) / len(vals))
        sums.append(sum(vals))
    return torch.tensor(means), torch.tensor(sums)


def hand_nll(logits, labels):
    return per_example(logits, labels, lambda b, t: -float(F.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]]))


def hand_kl(ref_logits, logits, labels):
    def kl(b, t):
        p, q = F.softmax(ref_logits[b, t - 1].double(), -1), F.softmax(logits[b, t - 1].double(), -1)
        return float((p * (p.log() - q.log())).sum())

    return per_example(logits, labels, kl)[0]


def reference(trainer):
    return "adapter_off" if trainer._ref_copy is None else trainer._ref_copy


def loss_of(trainer, batch):
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


@pytest.mark.parametrize("lora", [True, False])
def test_sku_loss(tmp_path, tokenizer, pairs, lora):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "sku", lora=lora)
    m, a = tr.model, tr.args
    gd = hand_nll(logits_of(m, batch, "forget"), batch["forget_labels"])[0].mean()
    rd = hand_nll(logits_of(m, batch, "mismatch"), batch["mismatch_labels"])[0].mean()
    kl = hand_kl(logits_of(m, batch, "retain", reference(tr)), logits_of(m, batch, "retain"), batch["retain_labels"])
    assert batch["mismatch_input_ids"].shape[0] == 4  # 2 prompts × K = 2
    # κ between the two examples' KLs: one is clamped, one is not, so a wrong clamp, a wrong sign
    # or a wrong KL each change the expected loss.
    a.sku_pd_bound = float(kl.min() + kl.max()) / 2
    assert kl.min() < a.sku_pd_bound < kl.max()
    pd = -torch.clamp(kl, max=a.sku_pd_bound).mean()
    expected = a.sku_gd_weight * gd + a.sku_rd_weight * rd + a.sku_pd_weight * pd
    assert loss_of(tr, batch) == pytest.approx(float(expected), rel=1e-4)
    # The KL term is small beside GD and RD: check it alone, where a missing clamp or a flipped
    # sign cannot hide inside the relative tolerance.
    a.sku_gd_weight = a.sku_rd_weight = 0.0
    alone = loss_of(tr, batch)
    assert alone == pytest.approx(float(a.sku_pd_weight * pd), rel=1e-4)
    assert abs(alone - float(a.sku_pd_weight * -kl.mean())) > 1e-3 * abs(alone)  # unclamped would differ
    a.sku_pd_weight = -a.sku_pd_weight  # the term's sign reaches the loss
    assert loss_of(tr, batch) == pytest.approx(-alone, rel=1e-4)


def test_ft_negate_is_guided_distortion_only(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "ft-negate")
    gd = hand_nll(logits_of(tr.model, batch, "forget"), batch["forget_labels"])[0].mean()
    assert "retain_input_ids" not in batch and "mismatch_input_ids" not in batch
    assert loss_of(tr, batch) == pytest.approx(float(tr.args.sku_gd_weight * gd), rel=1e-4)


def test_ga_loss(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "ga")
    assert loss_of(tr, batch) == pytest.approx(-float(hand_nll(logits_of(tr.model, batch, "forget"), batch["forget_labels"])[0].mean()), rel=1e-4)


@pytest.mark.parametrize("lora", [True, False])
def test_llmu_loss(tmp_path, tokenizer, pairs, lora):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "llmu", lora=lora)
    m = tr.model
    forget = hand_nll(logits_of(m, batch, "forget"), batch["forget_labels"])[0].mean()
    mismatch = hand_nll(logits_of(m, batch, "mismatch"), batch["mismatch_labels"])[0].mean()
    kl = hand_kl(logits_of(m, batch, "retain", reference(tr)), logits_of(m, batch, "retain"), batch["retain_labels"]).mean()
    assert loss_of(tr, batch) == pytest.approx(float(-0.5 * forget + mismatch + kl), rel=1e-4)


def test_npo_loss(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "npo")
    m, beta = tr.model, tr.args.npo_beta
    logp = -hand_nll(logits_of(m, batch, "forget"), batch["forget_labels"])[1]
    ref_logp = -hand_nll(logits_of(m, batch, "forget", reference(tr)), batch["forget_labels"])[1]
    npo = (-2 / beta * F.logsigmoid(-beta * (logp - ref_logp))).mean()
    retain = hand_nll(logits_of(m, batch, "retain"), batch["retain_labels"])[0].mean()
    assert (logp - ref_logp).abs().max() > 0
    assert loss_of(tr, batch) == pytest.approx(float(npo + retain), rel=1e-4)


def test_simnpo_loss(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "simnpo", simnpo_delta=0.5)
    m, a = tr.model, tr.args
    nll = hand_nll(logits_of(m, batch, "forget"), batch["forget_labels"])[0]
    simnpo = (-2 / a.simnpo_beta * F.logsigmoid(a.simnpo_beta * (nll - 0.5))).mean()
    retain = hand_nll(logits_of(m, batch, "retain"), batch["retain_labels"])[0].mean()
    assert loss_of(tr, batch) == pytest.approx(float(simnpo + retain), rel=1e-4)


def test_refusal_dpo_loss(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "refusal-dpo")
    m, beta = tr.model, tr.args.dpo_beta

    def ratio(group):
        logp = -hand_nll(logits_of(m, batch, group), batch[f"{group}_labels"])[1]
        ref = -hand_nll(logits_of(m, batch, group, reference(tr)), batch[f"{group}_labels"])[1]
        return logp - ref

    dpo = -F.logsigmoid(beta * (ratio("positive") - ratio("forget"))).mean()
    retain = hand_nll(logits_of(m, batch, "retain"), batch["retain_labels"])[0].mean()
    assert loss_of(tr, batch) == pytest.approx(float(dpo + retain), rel=1e-4)


def test_rmu_loss_and_trainable_layers(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "rmu", lora=False, rmu_coeff=3.0)
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert trainable and all(".mlp." in n for n in trainable)
    assert {n.split(".")[2] for n in trainable} == {"0", "1"}  # layers ℓ−2..ℓ with ℓ = 1
    m = tr.model

    def hidden(model, group):
        with torch.no_grad():
            out = model(input_ids=batch[f"{group}_input_ids"], attention_mask=batch[f"{group}_attention_mask"], output_hidden_states=True)
        return out.hidden_states[2]  # output of layer 1

    def mse(h, target, mask):
        rows = []
        for b in range(h.shape[0]):
            keep = mask[b].bool()
            rows.append(((h[b][keep] - target[b][keep]) ** 2).mean())
        return torch.stack(rows).mean()

    loss = loss_of(tr, batch)
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(64, generator=gen)
    target = (3.0 * u / u.norm()).expand_as(hidden(m, "forget"))
    steer = mse(hidden(m, "forget"), target, batch["forget_attention_mask"])
    keep = mse(hidden(m, "retain"), hidden(tr._ref_copy, "retain"), batch["retain_attention_mask"])
    assert loss == pytest.approx(float(steer + keep), rel=1e-4)


def forget_nll(model, tokenizer, forget):
    from unlearnkit.evaluation.metrics import answer_nlls

    return sum(answer_nlls(model, tokenizer, forget)) / len(forget)


@pytest.mark.parametrize("method,extra", [("ga", {}), ("llmu", {}), ("npo", {}), ("refusal-dpo", {}),
                                          # a random-init model's forget NLL (~10.7) already saturates
                                          # SimNPO at δ = 0; δ above it puts the loss in its active range
                                          ("simnpo", {"simnpo_delta": 12.0})])
def test_unlearning_methods_raise_forget_nll(tmp_path, tokenizer, pairs, method, extra):
    forget, retain = pairs
    before = forget_nll(make_tiny_model(tokenizer), tokenizer, forget[:4])
    tr = build_trainer(make_tiny_model(tokenizer), tokenizer, forget[:4], retain[:4], args_for(tmp_path, method, max_steps=4, **extra))
    tr.train()
    after = forget_nll(finish(tr), tokenizer, forget[:4])
    assert after > before + 1e-3, (before, after)


def test_rmu_moves_activations_toward_the_steering_vector(tmp_path, tokenizer, pairs):
    forget, retain = pairs
    tr = build_trainer(make_tiny_model(tokenizer), tokenizer, forget[:4], retain[:4], args_for(tmp_path, "rmu", max_steps=5, lora=False))
    batch = tr.data_collator([tr.train_dataset[i] for i in range(2)])
    first = tr.compute_loss(tr.model, batch).item()
    tr.train()
    assert tr.compute_loss(tr.model, batch).item() < first


@pytest.mark.parametrize("method,lora", [("sku", True), ("sku", False), ("ft-negate", True)])
def test_negation_methods_learn_then_negate(tmp_path, tokenizer, pairs, method, lora):
    forget, retain = pairs
    base = make_tiny_model(tokenizer)
    base.save_pretrained(tmp_path / "base")
    before = forget_nll(base, tokenizer, forget[:4])
    tr = build_trainer(make_tiny_model(tokenizer), tokenizer, forget[:4], retain[:4],
                       args_for(tmp_path, method, max_steps=4, lora=lora, learning_rate=5e-3 if lora else 1e-3))
    tr.train()
    harmful = tr.accelerator.unwrap_model(tr.model)
    assert forget_nll(harmful, tokenizer, forget[:4]) < before  # stage 1 learns the harmful answers
    negated = finish(tr, base_dir=tmp_path / "base")
    assert forget_nll(negated, tokenizer, forget[:4]) > before  # stage 2 pushes them below θ₀
    assert not hasattr(negated, "peft_config")


def test_emu_loss(tmp_path, tokenizer, pairs):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "emu", emu_samples=1, emu_eval_every=0)
    m = tr.model
    ref_f = logits_of(m, batch, "forget", reference(tr))
    cur_f = logits_of(m, batch, "forget")

    def js(b, t):
        p, q = F.softmax(ref_f[b, t - 1].double(), -1), F.softmax(cur_f[b, t - 1].double(), -1)
        mix = (p + q) / 2
        return float(0.5 * (p * (p / mix).log()).sum() + 0.5 * (q * (q / mix).log()).sum())

    neg = -per_example(cur_f, batch["forget_labels"], js)[0].mean()
    pos = hand_nll(logits_of(m, batch, "positive"), batch["positive_labels"])[0].mean()
    nor = hand_kl(logits_of(m, batch, "retain", reference(tr)), logits_of(m, batch, "retain"), batch["retain_labels"]).mean()
    assert loss_of(tr, batch) == pytest.approx(float(neg + pos + nor), rel=1e-4)


def test_emu_selects_with_the_judge_and_targets_the_cluster_mean(tmp_path, tokenizer, pairs, monkeypatch):
    from unlearnkit.methods.emu import EMUTrainer, HarmfulRateStop

    monkeypatch.setattr("unlearnkit.evaluation.judge.load_judge", lambda spec: KeywordJudge())
    _, retain = pairs
    forget = [{"prompt": f"How do I do harmful thing {i}?", "response": f"Sure, plan {i}.", "category": "x"} for i in range(12)]
    args = args_for(tmp_path, "emu", emu_samples=1)
    bad, positive, callbacks = EMUTrainer.prepare(make_tiny_model(tokenizer), tokenizer, forget, retain, args)
    assert bad and all("plan" in d["response"] for d in bad)  # the judge picked them
    assert len(positive) == len(bad) and all("plan" not in p for p in positive)
    stop = callbacks[0]
    assert isinstance(stop, HarmfulRateStop) and stop.prompts  # validation prompts for the early stop ...
    assert not {d["prompt"] for d in bad} & set(stop.prompts)  # ... that it never trains on
    from unlearnkit.data import split_pairs

    assert set(stop.prompts) == {p["prompt"] for p in split_pairs(forget, validation=0.1, test=0.0)["validation"]}


class KeywordJudge:
    name, verdicts, pairwise = "kw", ("complied",), True

    def score(self, prompts, responses, verdict="complied"):
        return [1.0 if "plan" in r else 0.0 for r in responses]


def test_emu_target_is_the_member_nearest_the_cluster_mean(monkeypatch):
    """Hand-made embeddings: the mean of category x's five members is nearest member 2; category y
    has fewer than 5 members and so takes the global target."""
    import numpy as np

    from unlearnkit.methods.emu import cluster_targets

    vectors = {"x0": [1, 0, 0], "x1": [0, 1, 0], "x2": [0.6, 0.6, 0.1], "x3": [0.9, 0.1, 0], "x4": [0.1, 0.9, 0],
               "y0": [0, 0, 1], "y1": [0, 0.1, 1]}
    monkeypatch.setattr("unlearnkit.evaluation.embeddings.embed",
                        lambda texts: np.array([vectors[t] for t in texts], dtype=float))
    desirable = [{"response": k, "category": k[0]} for k in vectors]
    targets = cluster_targets(desirable)
    all_vectors = np.array(list(vectors.values()), dtype=float)
    global_best = list(vectors)[int(np.argmax(all_vectors @ all_vectors.mean(0)))]
    assert targets["x"] == "x2" and "y" not in targets and targets[""] == global_best


def test_emu_early_stop_fires_at_target(tmp_path, tokenizer, pairs):
    from unlearnkit.methods.emu import HarmfulRateStop

    class Never:
        name, verdicts, pairwise = "never", ("complied",), True

        def score(self, prompts, responses, verdict="complied"):
            return [0.0] * len(prompts)

    forget, retain = pairs
    tr = build_trainer(make_tiny_model(tokenizer), tokenizer, forget[:4], retain[:4], args_for(tmp_path, "ga", max_steps=6))
    stop = HarmfulRateStop(tokenizer, ["q?"], Never(), every=2, target=0.05)
    tr.add_callback(stop)
    tr.train()
    assert tr.state.global_step == 2 and stop.history == [(2, 0.0)]


def test_logits_are_computed_only_where_an_answer_token_is_predicted():
    from unlearnkit.methods.base import answer_positions

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, -100]])
    positions, aligned = answer_positions(labels)
    # Row 0: positions 1 and 2 predict 5 and 6; row 1: positions 0..2 predict 7, 8, 9.
    assert positions.tolist() == [[1, 2, 0, 0], [0, 1, 2, 0]]
    assert aligned.tolist() == [[-100, 5, 6, -100], [-100, 7, 8, 9]]


def test_models_without_logits_to_keep_get_the_same_loss(tmp_path, tokenizer, pairs, monkeypatch):
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "sku", lora=False)
    compact = loss_of(tr, batch)
    monkeypatch.setattr(type(tr), "_accepts_logits_to_keep", lambda self, model: False)  # full logits, gathered after
    assert loss_of(tr, batch) == pytest.approx(compact, rel=1e-5)


@pytest.mark.parametrize("lora", [True, False])
def test_sku_negation_aware_terms_read_the_negated_model(tmp_path, tokenizer, pairs, lora):
    """ε₄·KL(θ₀ ‖ θ₀−λτ) on normal pairs and ε₅·max(0, κ_f − NLL at θ₀−λτ) on harmful pairs, against a
    hand-built negated model (a separate copy, not the trainer's scaled adapter or functional call)."""
    import copy

    from unlearnkit.negation import negate_lora

    lam = 2.0
    tr, batch = trainer_and_batch(tmp_path, tokenizer, pairs, "sku", lora=lora, negation_scale=lam,
                                  sku_pd_weight=0.0, sku_negated_retain_weight=0.7, sku_negated_forget_weight=0.3,
                                  sku_negated_forget_bound=50.0)
    m, a = tr.model, tr.args
    if lora:  # stage 2 itself (negate_lora, tested against hand arithmetic in test_negation) on a copy
        negated = negate_lora(copy.deepcopy(m), lam)
        negated_logits = lambda group: _plain_logits(negated, batch, group)
    else:
        theta0 = dict(tr._ref_copy.named_parameters())
        negated = copy.deepcopy(tr._ref_copy)
        with torch.no_grad():
            for n, p in negated.named_parameters():
                p.copy_((1 + lam) * theta0[n] - lam * dict(m.named_parameters())[n])
        negated_logits = lambda group: _plain_logits(negated, batch, group)
    gd = hand_nll(logits_of(m, batch, "forget"), batch["forget_labels"])[0].mean()
    rd = hand_nll(logits_of(m, batch, "mismatch"), batch["mismatch_labels"])[0].mean()
    nr = hand_kl(logits_of(m, batch, "retain", reference(tr)), negated_logits("retain"), batch["retain_labels"]).mean()
    nll_neg = hand_nll(negated_logits("forget"), batch["forget_labels"])[0]
    nf = torch.clamp(50.0 - nll_neg, min=0).mean()
    assert nr > 1e-4 and (nll_neg < 50).all()  # both terms are live
    expected = a.sku_gd_weight * gd + a.sku_rd_weight * rd + 0.7 * nr + 0.3 * nf
    assert loss_of(tr, batch) == pytest.approx(float(expected), rel=1e-4)
    # the negated forward leaves the adapter's own scaling untouched
    assert loss_of(tr, batch) == pytest.approx(float(expected), rel=1e-4)


def _plain_logits(model, batch, group):
    ids, mask = batch[f"{group}_input_ids"], batch[f"{group}_attention_mask"]
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _loss_and_grads(trainer, batch, packing):
    trainer.args.packing = packing
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method,lora", [(m, False) for m in ("sku", "ft-negate", "ga", "llmu", "npo", "simnpo", "rmu",
                                                                "refusal-dpo", "emu")] + [("sku", True), ("npo", True)])
def test_packed_and_padded_steps_give_the_same_loss_and_gradients(tmp_path, tokenizer, method, lora):
    from unlearnkit.methods import METHODS
    from unlearnkit.methods.base import PackedRows

    # Answers of very different lengths, so that packing puts several sequences in one row.
    # Every sequence carries the chat template's system prompt (~30 tokens): one long answer makes
    # room for two short sequences in a row.
    forget = [{"prompt": f"How do I do harmful thing {i}?", "response": "Sure, step one" + ", then more" * (20 * (i == 3))}
              for i in range(4)]
    retain = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}" + " indeed" * i} for i in range(4)]
    extra = {"sku_negated_retain_weight": 1.0, "sku_negated_forget_weight": 0.5} if method == "sku" else {}
    trainer = build_trainer(make_tiny_model(tokenizer), tokenizer, forget, retain,
                            args_for(tmp_path, method, lora=lora, emu_samples=1, emu_eval_every=0, **extra))
    assert METHODS[method] is type(trainer) or isinstance(trainer, METHODS[method])
    with torch.no_grad():  # θ ≠ θ₀, so reference and negated terms are not trivially equal
        for name, p in trainer.model.named_parameters():
            if p.requires_grad and "lora_A" not in name:
                p.add_(0.05 * torch.randn_like(p))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    groups = trainer.group_names(batch)
    ids, mask, labels = (torch.cat([batch[f"{g}_{part}"] for g in groups]) for part in ("input_ids", "attention_mask", "labels"))
    none = torch.zeros(len(mask), 1, dtype=torch.long)
    packed = PackedRows.for_step(ids, mask, labels, none)
    assert packed.rows < len(mask)  # it does pack
    shared = PackedRows.for_step(ids, mask, labels, none, share=True)
    assert shared.prefix > 20 and shared.rows * shared.width < packed.rows * packed.width  # the shared layout is the one run
    if "mismatch" in groups:  # a harmful prompt under its own and its K random answers: held once per chunk
        assert any(a > shared.prefix for a in shared.starts)
    padded_loss, padded_grads = _loss_and_grads(trainer, batch, packing=False)
    packed_loss, packed_grads = _loss_and_grads(trainer, batch, packing=True)
    assert trainer._packs == {False: True, True: True}  # packed, with the system turn shared once per row
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5, abs=1e-6)
    assert padded_grads and padded_grads.keys() == packed_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_packed_rows_with_shared_prefixes_hold_each_once_and_mask_across_sequences():
    from unlearnkit.methods.base import PackedRows, prompt_families

    # Every sequence begins with tokens 7 8; sequences 0, 1 and 3 also share a prompt (7 8 9 9 9)
    # and differ from token 5 on, where their answers (labels) begin.
    ids = torch.tensor([[7, 8, 9, 9, 9, 40, 41, 42, 43, 44, 45, 46],
                        [7, 8, 9, 9, 9, 50, 51, 52, 0, 0, 0, 0],
                        [7, 8, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69],
                        [7, 8, 9, 9, 9, 70, 71, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([12, 8, 12, 7])
    mask = (torch.arange(12) < lengths[:, None]).long()
    labels = torch.where(torch.arange(12) >= torch.tensor([5, 5, 6, 5])[:, None], ids, -100).masked_fill(mask == 0, -100)
    prefix = 2
    starts, family = prompt_families(ids, mask, labels, prefix)
    assert starts == [5, 5, 2, 5] and family == [0, 0, 2, 0]
    layout = PackedRows(lengths, torch.zeros(4, 1, dtype=torch.long), width=16, prefix=prefix, starts=starts, family=family)
    # room 14 after the prefix: the family's stem (3) + 7 + 3 leaves no room for its last member (2),
    # which starts a second chunk with its own copy of the stem; rows 13 | 10 | 5, first fit
    assert layout.rows == 3 and layout.width == 16 and layout.shares
    packed = layout.pack(ids)
    assert (packed[:, :prefix] == torch.tensor([7, 8])).all()
    mask4 = layout.attention_mask()[:, 0]
    cells = set()
    for b, n in enumerate(lengths.tolist()):
        r, a, o, s = layout.row[b], starts[b], layout.offset[b], layout.stem_at[b]
        assert packed[r, o:o + n - a].tolist() == ids[b, a:n].tolist()
        assert packed[r, s:s + a - prefix].tolist() == ids[b, prefix:a].tolist()
        assert layout.position_ids[r, o:o + n - a].tolist() == list(range(a, n))
        assert layout.position_ids[r, s:s + a - prefix].tolist() == list(range(prefix, a))
        cells |= {(r, c) for c in range(o, o + n - a)}
        last = o + n - a - 1  # the sequence's last token sees exactly the prefix, its stem and its own tokens
        assert mask4[r, last].nonzero().flatten().tolist() == [0, 1] + list(range(s, s + a - prefix)) + list(range(o, last + 1))
        # a position t of the padded layout maps to the place that holds that token
        assert packed[r, layout.place(b, torch.arange(n))].tolist() == ids[b, :n].tolist()
    assert len(cells) == int((lengths - torch.tensor(starts)).sum())  # no two sequences' own tokens overlap
    stems = {(layout.row[b], layout.stem_at[b]) for b in (0, 1, 3)}
    assert len(stems) == 2  # the family's prompt is held once per chunk, not once per sequence
    float_mask = layout.attention_mask(boolean=False)
    assert ((float_mask == 0) == layout.attention_mask()).all()


def test_packed_rows_place_each_sequence_once_without_overlap():
    from unlearnkit.methods.base import PackedRows

    lengths = torch.tensor([7, 3, 12, 5, 9, 2])
    layout = PackedRows(lengths, torch.zeros(6, 1, dtype=torch.long))
    assert layout.width == 12 and layout.rows == 4  # 12 | 9+3 | 7+5 | 2: first fit, longest first
    cells = [(layout.row[b], layout.offset[b] + t) for b in range(6) for t in range(int(lengths[b]))]
    assert len(set(cells)) == int(lengths.sum()) and all(c < 12 for _, c in cells)
    for b in range(6):  # each sequence's positions restart at 0
        start = layout.offset[b]
        assert layout.position_ids[layout.row[b], start:start + int(lengths[b])].tolist() == list(range(int(lengths[b])))


def test_packed_rows_keep_only_the_logits_a_loss_reads():
    from unlearnkit.methods.base import IGNORE, PackedRows, answer_positions

    # three sequences whose answers are 5, 2 and 1 tokens long: answer_positions pads each to K + 1 = 6
    lengths = [9, 6, 4]
    ids = torch.arange(1, 28).reshape(3, 9) % 50 + 1
    mask = (torch.arange(9) < torch.tensor(lengths)[:, None]).long()
    labels = torch.full((3, 9), IGNORE)
    for b, (n, answer) in enumerate(zip(lengths, (5, 2, 1))):
        labels[b, n - answer:n] = ids[b, n - answer:n]
    positions, aligned = answer_positions(labels)
    layout = PackedRows.for_step(ids, mask, labels, positions)
    reads = [5, 2, 1]
    per_row = [sum(reads[b] for b in range(3) if layout.row[b] == r) for r in range(layout.rows)]
    assert layout.keep.shape == (layout.rows, max(per_row))  # not rows x (sequences per row x 6)
    kept = layout.keep.reshape(-1)
    for b in range(3):  # every read column maps back to its own position, wherever it was packed
        for j in range(reads[b]):
            assert int(kept[layout.take[b, j]]) == int(layout.place(b, positions[b, j]))

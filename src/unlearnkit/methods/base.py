"""The arguments dataclass and the Trainer base every method subclasses.

A method is a `UnlearnTrainer` subclass that overrides `compute_loss` only. The base supplies the
two things losses share: running several data groups through the model in one forward pass, and
the reference model θ₀ — under LoRA that is the same weights with the adapter disabled (no second
copy in memory); under full fine-tuning a frozen copy, built only when the method asks for one.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from unlearnkit.data.format import IGNORE
from unlearnkit.distributed import cpu_fsdp_plugin, has_accelerator
from unlearnkit.errors import UnlearnkitError


@dataclass
class UnlearnArguments(TrainingArguments):
    """transformers' TrainingArguments plus every unlearning knob (defaults and formulas: docs/methods.md)."""

    # Trainer defaults that differ for us: batches are dicts of groups, not model kwargs.
    remove_unused_columns: bool = False
    report_to: str | list[str] = "none"
    learning_rate: float | None = field(default=None, metadata={"help": "default 2e-4 under LoRA, 2e-5 for full fine-tuning"})
    logging_steps: float = 1
    save_steps: float = 25
    save_total_limit: int | None = 2
    dataloader_pin_memory: bool = False

    method: str = field(default="sku", metadata={"help": "registered method name (`unlearnkit methods`)"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (False: full fine-tune)"})
    lora_r: int = 32
    lora_alpha: int = 16
    lora_targets: str = field(default="all-linear", metadata={
        "help": "comma-separated module names LoRA adapts; all-linear: every linear layer of the decoder blocks, never the LM head"})
    max_length: int = field(default=256, metadata={"help": "tokens per prompt+answer sequence"})
    packing: bool = field(default=True, metadata={
        "help": "pack a step's sequences into rows without padding (position ids restart per sequence, so "
                "attention stays within each); False: one padded row per sequence"})
    share_prefix: bool = field(default=True, metadata={
        "help": "with packing, run the prefix every sequence of a step begins with (the chat template's system "
                "turn) once per row and let each sequence attend to it (exact under causal attention); False: "
                "each sequence carries its own copy"})
    system_prompt: str | None = field(default=None, metadata={
        "help": "system message of the training sequences: unset = the chat template's own default, which is "
                "what generation and evaluation use; '' = an empty one (fewer tokens per sequence)"})
    mismatch_k: int = field(default=5, metadata={"help": "random answers per forget prompt (SKU random disassociation, LLMU mismatch)"})
    retain_weight: float = field(default=1.0, metadata={"help": "α: weight of the normal-data term (npo, simnpo, rmu, refusal-dpo)"})
    # SKU (ft-negate uses the GD weight only)
    sku_gd_weight: float = 2.5
    sku_rd_weight: float = 2.5
    sku_pd_weight: float = 1.0
    sku_pd_bound: float = field(default=5.0, metadata={"help": "κ: preservation-divergence KL clamp (inf = authors' unbounded form)"})
    # Negation-aware stage 1 (ours, not the paper's): terms evaluated at θ₀ − λ·τ, the model the user gets.
    sku_negated_retain_weight: float = field(default=0.0, metadata={
        "help": "ε₄: weight of KL(p_θ₀ ‖ p_(θ₀−λτ)) on normal pairs, so τ's negation keeps normal answers"})
    sku_negated_forget_weight: float = field(default=0.0, metadata={
        "help": "ε₅: weight of max(0, κ_f − NLL of the harmful answers at θ₀ − λτ): lowers their likelihood there, bounded"})
    sku_negated_forget_bound: float = field(default=6.0, metadata={"help": "κ_f: harmful-answer NLL at θ₀ − λτ beyond which ε₅'s term stops pushing"})
    negation_scale: float = field(default=1.0, metadata={"help": "λ in θ_new = θ₀ − λ·τ"})
    # Baselines
    ga_stop_nll: float = 100.0
    llmu_ga_weight: float = 0.5
    llmu_mismatch_weight: float = 1.0
    llmu_kl_weight: float = 1.0
    npo_beta: float = 0.1
    simnpo_beta: float = 4.5
    simnpo_delta: float = 0.0
    dpo_beta: float = 0.1
    rmu_layer: int = field(default=-1, metadata={"help": "steered layer (-1: one third of the depth)"})
    rmu_coeff: float = field(default=-1.0, metadata={"help": "c (-1: 4 × θ₀'s mean activation norm at that layer)"})
    # EMU
    emu_neg_weight: float = 1.0
    emu_pos_weight: float = 1.0
    emu_nor_weight: float = 1.0
    emu_samples: int = field(default=2, metadata={"help": "m: responses sampled from θ₀ per forget prompt"})
    emu_eval_every: int = 10
    emu_target_rate: float = 0.05
    emu_judge: str = field(default="default", metadata={"help": "judge that selects the dialogues and stops training"})

    def __post_init__(self):
        if not has_accelerator():
            # Say so to accelerate explicitly: only then does it set up a gloo process group when
            # torchrun / `accelerate launch --multi_gpu` started several processes on a CPU machine
            # (otherwise every rank silently trains on all the data alone), and allow bf16 autocast.
            self.use_cpu = True
        if self.learning_rate is None:  # one default for the CLI and the Python API alike
            self.learning_rate = 2e-4 if self.lora else 2e-5
        super().__post_init__()
        if not self.negation_scale > 0:
            raise UnlearnkitError(f"--lambda must be > 0 (got {self.negation_scale}): the negation scale subtracts λ·τ")


class UnlearnTrainer(Trainer):
    """Base for every method. Subclasses set the class attributes and override `compute_loss`."""

    description = ""
    paper = ""
    needs_reference = False   # compute_loss calls self.reference_forward
    mismatch_pool = None      # "forget" | "retain": UnlearnDataset draws random answers from it
    negate_after = False      # training builds a harmful model that is then negated (SKU, ft-negate)
    uses_retain = True        # the loss reads the normal (retain) group

    @classmethod
    def prepare(cls, model, tokenizer, forget, retain, args):
        """Turn the user's data into what the loss reads: (forget, positive answers or None, callbacks)."""
        return forget, None, []

    @classmethod
    def trainable_modules(cls, model, args) -> list[str] | None:
        """Module names to train; None = the LoRA targets from args, or every weight when full."""
        return None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ref_copy = None
        self._ref_is_sharded = False
        self._keeps_logits = None
        self._packs: dict[bool, bool] = {}  # layout (shared prefix or not) → exact for this model
        self._terms: dict[str, list[float]] = {}
        if self.needs_reference and not self._is_peft(self.model):
            # Full fine-tuning: θ₀ must be kept aside. Copied once, before any step changes θ.
            self._ref_copy = copy.deepcopy(self.model).eval().requires_grad_(False)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        plugin = cpu_fsdp_plugin()
        if plugin is not None:
            from accelerate import PartialState
            from accelerate.utils import DistributedType

            # Both states: every new AcceleratorState() copies PartialState's fields over its own
            PartialState().distributed_type = self.accelerator.state.distributed_type = DistributedType.FSDP
            self.accelerator.state.fsdp_plugin = plugin
            self.is_fsdp_enabled = True

    @staticmethod
    def _is_peft(model) -> bool:
        return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")

    # --- shared pieces -------------------------------------------------------------------------
    @staticmethod
    def group_names(inputs: dict) -> list[str]:
        return [key[: -len("_input_ids")] for key in inputs if key.endswith("_input_ids")]

    def forward_groups(self, model, inputs: dict, names, output_hidden_states: bool = False) -> dict:
        """One forward pass over the named groups; returns {name: GroupOutput}.

        Logits are computed only where a loss reads them: at the positions that predict an answer
        token. Over a 49k vocabulary the logits of prompt and padding positions would cost more
        memory and softmax time than several decoder layers. GroupOutput.logits is [B, K+1, V]
        with row r's answer positions left-aligned, and GroupOutput.labels is realigned to match,
        so the losses' usual shift-by-one pairs each logit with the token it predicts."""
        names = [n for n in names if f"{n}_input_ids" in inputs]
        ids = torch.cat([inputs[f"{n}_input_ids"] for n in names])
        mask = torch.cat([inputs[f"{n}_attention_mask"] for n in names])
        raw_labels = torch.cat([inputs[f"{n}_labels"] for n in names])
        positions, labels = answer_positions(raw_labels)
        packs = getattr(self.args, "packing", False) and len(ids) > 1 and self._layout_is_exact(model, shared=False)
        attention = str(getattr(self.accelerator.unwrap_model(model).config, "_attn_implementation", ""))
        varlen = attention.startswith("flash")
        share = packs and not varlen and self._shares_prefixes(model, attention)
        packing = PackedRows.for_step(ids, mask, raw_labels, positions, share=share,
                                      width=int(mask.sum()) if varlen else None) if packs else None
        padded_width = ids.shape[1]
        if packing is not None:
            ids, positions = packing.pack(ids), packing.keep
            mask = packing.attention_mask(boolean=attention != "eager") if packing.shares else None
        model_kwargs = {"position_ids": packing.position_ids} if packing is not None else {}
        if self._accepts_logits_to_keep(model):
            model_kwargs["logits_to_keep"] = positions
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=output_hidden_states, use_cache=False,
                    **model_kwargs)
        logits = out.logits
        if logits.shape[1] != positions.shape[1]:  # an older model class that computes every position
            logits = torch.take_along_dim(logits, positions[..., None], dim=1)
        hidden_states = out.hidden_states if output_hidden_states else None
        sizes = [inputs[f"{n}_input_ids"].shape[0] for n in names]
        # Each group is trimmed to its own longest answer, so that a group has the same shape whichever
        # groups shared its forward pass (the reference pass may run it alone).
        widths = [int((group_labels != IGNORE).sum(1).max()) + 1 for group_labels in labels.split(sizes)]
        if packing is not None:
            # one gather straight into the groups' trimmed [B, width] layouts (one gather: each index's
            # backward zero-fills a gradient the size of all the kept logits)
            take = torch.cat([t[:, :w].reshape(-1) for t, w in zip(packing.take.split(sizes), widths)])
            kept = logits.reshape(-1, logits.shape[-1])[take]
            group_logits = [g.view(size, w, -1) for g, size, w in zip(kept.split([s * w for s, w in zip(sizes, widths)]), sizes, widths)]
            if hidden_states is not None:
                hidden_states = tuple(packing.unpack(h, inputs_width=padded_width) for h in hidden_states)
        else:  # split, not one slice per group: a slice's backward zero-fills a gradient the size of all the logits
            group_logits = [g[:, :w] for g, w in zip(logits.split(sizes), widths)]
        chunks = zip(names, group_logits, labels.split(sizes), widths,
                     zip(*(h.split(sizes) for h in hidden_states)) if output_hidden_states else [None] * len(names))
        return {n: GroupOutput(g, group_labels[:, :w], inputs[f"{n}_attention_mask"], hidden)
                for n, g, group_labels, w, hidden in chunks}

    def _shares_prefixes(self, model, attention: str) -> bool:
        """Whether a step may run the prefixes its sequences share once per row: when sharing is on and
        exact for this model."""
        # The check runs whatever this step's data: under FSDP its forward is a collective that every
        # rank must run, and another rank's step may share a prefix where this one's does not
        return (bool(getattr(self.args, "share_prefix", False)) and attention in ("sdpa", "eager")
                and self._layout_is_exact(model, shared=True))

    @torch.no_grad()
    def _layout_is_exact(self, model, shared: bool) -> bool:
        """Whether this model class computes a packed row exactly as it computes the sequences alone:
        with restarting position ids (most decoders build the block-diagonal mask from them; some, as
        OPT, derive positions from the attention mask instead), or, `shared`, with one prefix per row
        and our own 4D mask. Checked once each, on three short sequences."""
        if shared not in self._packs:
            device = next(model.parameters()).device
            # shared: token 1 is every sequence's prefix, token 2 the first two's shared prompt
            lengths = (4, 4, 2) if shared else (3, 2, 1)
            ids = torch.tensor([[1, 2, 3, 4], [1, 2, 5, 6], [1, 7, 0, 0]] if shared else [[1, 2, 3], [4, 5, 0], [6, 0, 0]], device=device)
            width = ids.shape[1]
            mask = (torch.arange(width, device=device) < torch.tensor(lengths, device=device)[:, None]).long()
            layout = PackedRows(mask.sum(1), torch.zeros(3, 1, dtype=torch.long, device=device), prefix=int(shared),
                                width=8 if shared else None, starts=[2, 2, 1] if shared else None,
                                family=[0, 0, 2] if shared else None)
            attention = str(getattr(self.accelerator.unwrap_model(model).config, "_attn_implementation", ""))
            row_mask = layout.attention_mask(boolean=attention != "eager") if shared else None
            was_training = model.training
            model.eval()  # dropout would make the two layouts differ by chance
            try:
                padded = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
                packed = model(input_ids=layout.pack(ids), attention_mask=row_mask, position_ids=layout.position_ids,
                               use_cache=False).logits.float()
                packed = layout.unpack(packed, inputs_width=width)
                error = max(float((packed[b, :n] - padded[b, :n]).abs().max()) for b, n in enumerate(lengths))
                self._packs[shared] = error <= 1e-2 * (1.0 + float(padded.abs().max()))
            except (TypeError, ValueError, RuntimeError):  # a forward without position_ids, or a mask it cannot take
                self._packs[shared] = False
            finally:
                model.train(was_training)
        return self._packs[shared]

    def _accepts_logits_to_keep(self, model) -> bool:
        if self._keeps_logits is None:  # the model class does not change during a run: look once
            base = self.accelerator.unwrap_model(model)
            base = base.get_base_model() if self._is_peft(base) else base
            self._keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        return self._keeps_logits

    @torch.no_grad()
    def reference_forward(self, model, inputs: dict, names, output_hidden_states: bool = False) -> dict:
        """forward_groups under θ₀."""
        if self._ref_copy is not None:
            if self.is_fsdp_enabled and not self._ref_is_sharded:
                from accelerate.utils import fsdp2_prepare_model

                # Sharded like the trained model, and only now that the Trainer has sharded that one:
                # no rank keeps a whole second copy of the weights
                self._ref_copy, self._ref_is_sharded = fsdp2_prepare_model(self.accelerator, self._ref_copy), True
            return self.forward_groups(self._ref_copy, inputs, names, output_hidden_states)
        peft_model = self.accelerator.unwrap_model(model)
        with peft_model.disable_adapter():
            return self.forward_groups(model, inputs, names, output_hidden_states)

    def negated_forward(self, model, inputs: dict, names, scale: float) -> dict:
        """forward_groups at θ₀ − λ·τ, the model stage 2 will hand the user, with gradients to τ.
        Under LoRA τ is the adapter: the same adapter runs with its scaling multiplied by −λ.
        Under full fine-tuning τ = θ − θ₀: a functional call with (1 + λ)·θ₀ − λ·θ."""
        if self._ref_copy is None:
            from peft.tuners.lora import LoraLayer

            layers = [m for m in self.accelerator.unwrap_model(model).modules() if isinstance(m, LoraLayer)]
            saved = [dict(m.scaling) for m in layers]
            for m in layers:
                m.scaling.update({k: -scale * v for k, v in m.scaling.items()})
            try:
                return self.forward_groups(model, inputs, names)
            finally:
                for m, scaling in zip(layers, saved):
                    m.scaling.clear()
                    m.scaling.update(scaling)
        if self.is_fsdp_enabled:
            raise UnlearnkitError("the negation-aware terms under full fine-tuning cannot run under FSDP (θ₀ − λ·τ is "
                                  "built from whole weights): drop --full to train τ as a LoRA adapter, or launch "
                                  "without the FSDP config")
        inner = self.accelerator.unwrap_model(model)
        theta0 = dict(self._ref_copy.named_parameters())
        params = {n: (1 + scale) * theta0[n] - scale * p for n, p in inner.named_parameters()}

        class _AtNegated(torch.nn.Module):  # forward_groups calls model(...); route that call through functional_call
            def __init__(self):
                super().__init__()
                self.inner = inner
                self.config = inner.config

            def forward(self, **kwargs):
                return torch.func.functional_call(inner, params, args=(), kwargs=kwargs, tie_weights=True)

        return self.forward_groups(_AtNegated(), inputs, names)

    def record(self, **terms) -> None:
        """Remember loss components; they are averaged into the next log line."""
        for name, value in terms.items():
            self._terms.setdefault(name, []).append(float(value.detach().mean()) if torch.is_tensor(value) else float(value))

    # --- Trainer hooks ---------------------------------------------------------------------------
    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._terms:
            logs.update({name: sum(v) / len(v) for name, v in self._terms.items()})
            self._terms = {}
        super().log(logs, *args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(float(loss)):
            raise NonFiniteLoss(self.state.global_step + 1, float(loss))
        return loss


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For labels [B, T] (IGNORE outside answers): the positions [B, K+1] whose logits a loss needs,
    and labels [B, K+1] aligned to them under the shift-by-one convention.

    Column j < K of row r is the j-th position that predicts an answer token (the last column and
    a shorter row's tail point at position 0 and are ignored); labels[:, j + 1] is the token it predicts."""
    predicts = labels[:, 1:] != IGNORE
    counts = predicts.sum(1)
    k = int(counts.max()) if labels.shape[0] else 0
    # A stable sort on "not an answer" moves each row's answer positions to the front, in order.
    order = torch.sort((~predicts).to(torch.uint8), dim=1, stable=True).indices[:, :k]
    valid = torch.arange(k, device=labels.device) < counts[:, None]
    positions = torch.zeros(labels.shape[0], k + 1, dtype=torch.long, device=labels.device)
    positions[:, :k] = torch.where(valid, order, 0)
    aligned = torch.full_like(positions, IGNORE)
    aligned[:, 1:] = torch.where(valid, labels.gather(1, order + 1), IGNORE)
    return positions, aligned


def shared_prefix_length(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """How many leading tokens every (right-padded) sequence shares, at most all but one token of the shortest."""
    limit = int(mask.sum(1).min()) - 1
    same = (ids[:, :limit] == ids[:1, :limit]).all(0)
    return int(same.long().cumprod(0).sum())


def prompt_families(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, prefix: int) -> tuple[list[int], list[int]]:
    """Sequences whose prompts (every token before the answer) are the same token for token form a
    family: LLMU's and SKU's K random answers to one harmful prompt, beside its own answer. For each
    sequence: where its own part begins (its answer, in a family of two or more; else `prefix`) and
    its family (the first member's index)."""
    lengths = mask.sum(1).tolist()
    answers = (labels != IGNORE).long()
    starts = torch.where(answers.any(1), answers.argmax(1), mask.sum(1)).tolist()
    first: dict[tuple, int] = {}
    family = [first.setdefault(tuple(ids[b, :a].tolist()), b) if a < n else b
              for b, (a, n) in enumerate(zip(starts, lengths))]
    members = [family.count(f) for f in family]
    return [max(a, prefix) if m > 1 else prefix for a, m in zip(starts, members)], family


def distinct_tokens(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> int:
    """A step's real tokens with every shared prefix counted once: the least work any layout must do."""
    prefix = shared_prefix_length(ids, mask)
    starts, family = prompt_families(ids, mask, labels, prefix)
    return prefix + sum(starts[f] - prefix for f in set(family)) + int(mask.sum()) - sum(starts)


class PackedRows:
    """Where each sequence of a step goes when the step is packed without padding.

    Sequences (lengths from the padded attention mask) are placed first-fit, longest first, into rows
    of `width` tokens. The default width is the longest sequence's: without a variable-length
    attention kernel (CPU, SDPA) attention runs over the whole row, so wider rows would cost more
    attention than they save in padding. With flash attention, transformers runs each sequence of a
    row separately, and one row holding everything is padding-free. Position ids restart at 0 for
    each sequence (and for a row's unused tail); with no attention mask, transformers builds the
    block-diagonal causal mask from them, so no token attends across sequences and each sequence
    computes exactly what it would alone.

    Shared prefixes, two levels of them. `prefix` > 0: every sequence begins with the same `prefix`
    tokens (the chat template's system turn); each row holds them once. `starts`/`family`
    (`prompt_families`): sequences of one family share their tokens up to `starts[b]` (their prompt);
    a family's members go into chunks that fit a row, and each chunk holds that stem once, followed by
    the rest of each member. Position ids continue from what a token follows, and `attention_mask`
    lets every token see the row's prefix, its own chunk's stem and the earlier tokens of its own
    sequence. Under causal attention a prefix's states do not depend on what follows it, so this is
    exact, and a shared token's gradient is the sum over the sequences that read it."""

    def __init__(self, lengths: torch.Tensor, positions: torch.Tensor, width: int | None = None, prefix: int = 0,
                 starts: list[int] | None = None, family: list[int] | None = None, reads: list[int] | None = None):
        lengths = [int(n) for n in lengths]
        count = len(lengths)
        self.starts = list(starts) if starts is not None else [prefix] * count
        family = list(family) if family is not None else list(range(count))
        stem = {f: self.starts[f] - prefix for f in family}
        rests = [n - a for n, a in zip(lengths, self.starts)]
        room = max(max(stem[f] + r for f, r in zip(family, rests)), (width or 0) - prefix)
        chunks: list[list] = []  # [family, size, members], each fits a row
        for b in sorted(range(count), key=lambda b: -rests[b]):
            chunk = next((c for c in chunks if c[0] == family[b] and c[1] + rests[b] <= room), None)
            if chunk is None:
                chunk = [family[b], stem[family[b]], []]
                chunks.append(chunk)
            chunk[1] += rests[b]
            chunk[2].append(b)
        self.row, self.offset, self.stem_at, used = [0] * count, [0] * count, [0] * count, []
        device = positions.device
        self.lengths, self.prefix, self.width = lengths, prefix, prefix + room
        self.shares = prefix > 0 or any(stem[family[c[2][0]]] > 0 and len(c[2]) > 1 for c in chunks)
        placed = []
        for c, (f, size, members) in sorted(enumerate(chunks), key=lambda item: -item[1][1]):
            r = next((r for r, u in enumerate(used) if u + size <= room), len(used))
            if r == len(used):
                used.append(0)
            placed.append((c, r, prefix + used[r]))
            at = prefix + used[r] + stem[f]
            for b in members:
                self.row[b], self.stem_at[b], self.offset[b] = r, prefix + used[r], at
                at += rests[b]
            used[r] += size
        self.rows = len(used)
        # which sequence each place holds: -1 the shared prefix, b for sequence b, count + c for the stem
        # of chunk c, -2 an unused tail; `parent`: the stem a place may see besides its own tokens
        self.position_ids = torch.zeros(self.rows, self.width, dtype=torch.long, device=device)
        self.owner = torch.full((self.rows, self.width), -2, dtype=torch.long, device=device)
        self.owner[:, :prefix] = -1
        self.parent = self.owner.clone()
        for r, u in enumerate(used):
            self.position_ids[r, :prefix] = torch.arange(prefix, device=device)
            self.position_ids[r, prefix + u:] = torch.arange(room - u, device=device)
        for c, r, start in placed:
            f, _, members = chunks[c]
            end = start + stem[f]
            self.position_ids[r, start:end] = torch.arange(prefix, self.starts[f], device=device)
            self.owner[r, start:end] = self.parent[r, start:end] = count + c
            for b in members:
                n, a, o = lengths[b], self.starts[b], self.offset[b]
                self.position_ids[r, o:o + n - a] = torch.arange(a, n, device=device)
                self.owner[r, o:o + n - a], self.parent[r, o:o + n - a] = b, count + c
        # The kept logit positions: the first reads[b] of sequence b's [K+1] positions (those a loss
        # reads; by default all) moved to its place in its row (a position inside a shared prefix points
        # at that prefix), the rows' lists concatenated and padded to one width. `take` maps them back
        # to [B, K+1]; a column no loss reads maps to the first kept logit. Keeping only what is read
        # matters: a step's answers differ in length (LLMU: long forget answers, short mismatched
        # ones), and every kept position costs a vocabulary-wide row of the LM head, forward and back.
        k1, per_row = positions.shape[1], [[] for _ in range(self.rows)]
        reads = [k1] * count if reads is None else [min(int(n), k1) for n in reads]
        for b in range(count):
            per_row[self.row[b]].append(b)
        slots = max(1, max(sum(reads[b] for b in bs) for bs in per_row))
        self.keep = torch.zeros(self.rows, slots, dtype=torch.long, device=device)
        self.take = torch.zeros(count, k1, dtype=torch.long, device=device)
        for r, bs in enumerate(per_row):
            at = 0
            for b in bs:
                self.keep[r, at:at + reads[b]] = self.place(b, positions[b, :reads[b]])
                self.take[b, :reads[b]] = r * slots + at + torch.arange(reads[b], device=device)
                at += reads[b]

    @classmethod
    def for_step(cls, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor,
                 share: bool = False, width: int | None = None) -> "PackedRows":
        """The layout a step runs. Sharing prefixes, rows are twice as wide as the longest sequence:
        each extra sequence in a row saves a copy of the prefix, while attention over the whole row
        grows with its width (measured on LLMU's step, README Performance: 1× 18.0 s, 2× 13.8 s,
        4× 16.9 s); and only where that runs fewer positions than plain packing (with rows of one
        sequence each it would save nothing)."""
        lengths = mask.sum(1)
        reads = (labels[:, 1:] != IGNORE).sum(1).tolist()  # answer_positions' columns that predict a token
        plain = cls(lengths, positions, width=width, reads=reads)
        if not share:
            return plain
        prefix = shared_prefix_length(ids, mask)
        starts, family = prompt_families(ids, mask, labels, prefix)
        shared = cls(lengths, positions, width=2 * plain.width, prefix=prefix, starts=starts, family=family, reads=reads)
        return shared if shared.shares and shared.rows * shared.width < plain.rows * plain.width else plain

    def place(self, b: int, t: torch.Tensor) -> torch.Tensor:
        """Where position(s) t of sequence b sit in its row."""
        own = t - self.starts[b] + self.offset[b]
        return torch.where(t < self.prefix, t, torch.where(t < self.starts[b], t - self.prefix + self.stem_at[b], own))

    def pack(self, ids: torch.Tensor) -> torch.Tensor:
        packed = torch.zeros(self.rows, self.width, dtype=ids.dtype, device=ids.device)
        packed[:, :self.prefix] = ids[0, :self.prefix]
        for b, n in enumerate(self.lengths):
            a, r = self.starts[b], self.row[b]
            packed[r, self.stem_at[b]:self.stem_at[b] + a - self.prefix] = ids[b, self.prefix:a]  # again per member: same tokens
            packed[r, self.offset[b]:self.offset[b] + n - a] = ids[b, a:n]
        return packed

    def attention_mask(self, boolean: bool = True) -> torch.Tensor:
        """[rows, 1, width, width], for rows with shared prefixes: a token sees the row's prefix, its
        chunk's stem and the earlier tokens of its own sequence (an unused place sees only itself).
        Boolean (True = may attend) for SDPA; additive floats for eager attention."""
        query, key, stem = self.owner[:, :, None], self.owner[:, None, :], self.parent[:, :, None]
        eye = torch.eye(self.width, dtype=torch.bool, device=self.owner.device)
        causal = torch.ones(self.width, self.width, dtype=torch.bool, device=self.owner.device).tril()
        allowed = causal & ((key == -1) | (key == query) | (key == stem)) & ((query != -2) | eye)
        allowed = allowed[:, None]
        if boolean:
            return allowed
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)

    def unpack(self, hidden: torch.Tensor, inputs_width: int) -> torch.Tensor:
        """[rows, width, H] → [B, inputs_width, H]; positions past a sequence's end repeat its last
        token (the attention mask marks them as padding, and no loss reads them)."""
        if getattr(self, "_unpack_index", None) is None or self._unpack_index.shape[1] != inputs_width:
            # built once per step: RMU unpacks every layer's hidden states with the same index
            t = torch.arange(inputs_width)
            self._unpack_index = torch.stack([self.row[b] * self.width + self.place(b, torch.clamp(t, max=n - 1).to(self.owner.device)).cpu()
                                              for b, n in enumerate(self.lengths)])
        return hidden.reshape(-1, hidden.shape[-1])[self._unpack_index.to(hidden.device)]


@dataclass
class GroupOutput:
    logits: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    hidden_states: tuple | None = None


class NonFiniteLoss(UnlearnkitError):
    def __init__(self, step: int, value: float):
        super().__init__(
            f"loss became {value} at step {step}: lower --lr or the loss weights; the last good checkpoint "
            "is kept (rerun with --resume to continue from it)"
        )

"""Token-level formatting: exact answer boundary, chat template and the plain fallback."""

from unlearnkit.data.format import IGNORE, GroupCollator, UnlearnDataset, encode_pair, prompt_text


def answer_tokens(tokenizer, enc):
    return tokenizer.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE])


def test_chat_answer_mask_starts_at_first_answer_token(tokenizer):
    enc = encode_pair(tokenizer, "What is 2+2?", "Four.")
    assert answer_tokens(tokenizer, enc).startswith("Four.")
    assert "What is 2+2?" in tokenizer.decode(enc["input_ids"])
    prompt_len = sum(1 for l in enc["labels"] if l == IGNORE)
    assert tokenizer.decode(enc["input_ids"][:prompt_len]) == prompt_text(tokenizer, "What is 2+2?")


def test_plain_format_keeps_first_answer_token(tokenizer):
    plain = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    enc = encode_pair(plain, "Capital of France?", "Paris")
    assert "### Question: Capital of France?\n### Answer:" in plain.decode(enc["input_ids"])
    assert answer_tokens(plain, enc).strip().startswith("Paris")  # the " Paris" token is in the loss


def test_truncation_keeps_some_answer(tokenizer):
    enc = encode_pair(tokenizer, "word " * 400, "the answer", max_length=32)
    assert len(enc["input_ids"]) <= 32
    assert any(l != IGNORE for l in enc["labels"])


def test_dataset_groups_and_collator(tokenizer, pairs):
    forget, retain = pairs
    ds = UnlearnDataset(tokenizer, forget, retain, mismatch_pool="forget", mismatch_k=3, positive=["No."], seed=1)
    item = ds[0]
    assert set(item) == {"forget", "retain", "mismatch", "positive"}
    assert len(item["mismatch"]) == 3
    own = tokenizer.decode([t for t, l in zip(item["forget"][0]["input_ids"], item["forget"][0]["labels"]) if l != IGNORE])
    for seq in item["mismatch"]:  # never the prompt's own answer
        assert tokenizer.decode([t for t, l in zip(seq["input_ids"], seq["labels"]) if l != IGNORE]) != own
    assert ds[0] == ds[0]  # seeded draws: a resumed run sees the same batches
    batch = GroupCollator(tokenizer.pad_token_id)([ds[0], ds[1]])
    widths = {v.shape[1] for v in batch.values()}
    assert len(widths) == 1 and batch["mismatch_input_ids"].shape[0] == 6
    assert (batch["forget_labels"][batch["forget_attention_mask"] == 0] == IGNORE).all()


def test_system_prompt_choice_changes_only_the_system_turn(tokenizer, pairs):
    default = prompt_text(tokenizer, "What is 2+2?")
    assert "You are a helpful AI assistant" in default  # SmolLM2's template inserts its own
    empty = prompt_text(tokenizer, "What is 2+2?", system="")
    custom = prompt_text(tokenizer, "What is 2+2?", system="Answer briefly.")
    assert "You are a helpful AI assistant" not in empty and "Answer briefly." in custom
    for text in (empty, custom):  # the user turn and the assistant's opening are the template's own
        assert text.endswith(default[default.index("<|im_start|>user"):])
    forget, retain = pairs
    full = UnlearnDataset(tokenizer, forget, retain, mismatch_pool="forget", mismatch_k=2, seed=1)[0]
    short = UnlearnDataset(tokenizer, forget, retain, mismatch_pool="forget", mismatch_k=2, seed=1, system_prompt="")[0]
    for group in ("forget", "retain", "mismatch"):
        for a, b in zip(full[group], short[group]):
            assert len(b["input_ids"]) < len(a["input_ids"])
            assert answer_tokens(tokenizer, a) == answer_tokens(tokenizer, b)  # same answers in the loss


def test_a_template_without_a_system_role_says_so(tokenizer):
    import pytest

    from unlearnkit.errors import UnlearnkitError

    strict = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    strict.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                            "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert prompt_text(strict, "hi") == "hi"
    with pytest.raises(UnlearnkitError, match="leave system_prompt unset"):
        prompt_text(strict, "hi", system="")

"""The muting detector: does the model still say anything?

After many sequential edits a model can collapse until it emits empty strings or loops ("muting").
Over a fixed probe set of generation prompts, greedy outputs are scored by:

- ``empty_rate``: fraction of outputs that are empty once special tokens are removed (EOS first,
  whitespace only);
- ``repeat_rate``: fraction of generated tokens that already occurred earlier in the same output,
  pooled over all outputs (natural text repeats "the", commas...; loops push it towards 1);
- ``ngram_entropy``: ROME's generation entropy (Meng et al. 2022, §4.2 "fluency"): per output the
  weighted mean of bigram and trigram entropies in bits, weights 2/3 and 4/3, averaged over outputs.
  Words are split by a regex instead of NLTK's punkt tokenizer; an output with no n-gram scores 0.

The unedited model's values are the reference: a sweep measures them at step 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from editlab.model.tokens import greedy

# A fixed probe set: plain completions and (for chat models) questions asked as a user turn.
COMPLETION_PROMPTS = (
    "The capital of France is",
    "Once upon a time, there was a",
    "The best way to learn a new language is",
    "Water boils at a temperature of",
    "The first person to walk on the Moon was",
    "My favourite thing to cook at home is",
    "The main ingredients of bread are",
    "A good friend is someone who",
)
CHAT_PROMPTS = (
    "What is the capital of Italy?",
    "Write one sentence about the ocean.",
    "Name three colours.",
    "How many legs does a spider have?",
)
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Words and punctuation marks, as the entropy counts them."""
    return _WORD.findall(text)


def is_empty(text: str, special: Sequence[str] = ()) -> bool:
    """Empty, whitespace only, or nothing but special tokens (e.g. ``<|im_end|>``)."""
    for s in special:
        if s:
            text = text.replace(s, "")
    return not text.strip()


def repeats(tokens: Sequence) -> int:
    """How many tokens already occurred earlier in the sequence."""
    seen, n = set(), 0
    for t in tokens:
        n += t in seen
        seen.add(t)
    return n


def repeated_token_rate(outputs: Sequence[Sequence]) -> float | None:
    """Repeats over all tokens, pooled over outputs; None when no output has a token."""
    total = sum(len(t) for t in outputs)
    return None if total == 0 else sum(repeats(t) for t in outputs) / total


def _entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's n-gram entropy of one text: mean over n of weight_n · H(n-grams) in bits."""
    toks = words(text)
    parts = []
    for n, w in zip(ns, weights):
        grams = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
        parts.append(w * _entropy_bits(grams))
    return sum(parts) / len(parts)


@dataclass(frozen=True)
class Sample:
    prompt: str
    text: str
    chat: bool = False

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "text": self.text, "chat": self.chat}


@dataclass(frozen=True)
class MutingResult:
    empty_rate: float
    repeat_rate: float | None
    ngram_entropy: float
    mean_tokens: float
    samples: tuple[Sample, ...]

    def metrics(self) -> dict:
        return {
            "empty_rate": self.empty_rate,
            "repeat_rate": self.repeat_rate,
            "ngram_entropy": self.ngram_entropy,
            "mean_tokens": self.mean_tokens,
        }


def score_outputs(
    prompts: Sequence[str],
    texts: Sequence[str],
    tokenize: Callable[[str], Sequence] = str.split,
    special: Sequence[str] = (),
    chat: Sequence[bool] | None = None,
) -> MutingResult:
    """Score generated texts (``tokenize`` gives the tokens the repeat rate counts)."""
    if len(prompts) != len(texts):
        raise ValueError("one text per prompt")
    if not texts:
        raise ValueError("no outputs to score")
    cleaned = []
    for t in texts:
        for s in special:
            if s:
                t = t.replace(s, "")
        cleaned.append(t)
    toks = [list(tokenize(t)) if t.strip() else [] for t in cleaned]
    chat = list(chat) if chat is not None else [False] * len(texts)
    return MutingResult(
        empty_rate=sum(is_empty(t) for t in cleaned) / len(texts),
        repeat_rate=repeated_token_rate(toks),
        ngram_entropy=sum(ngram_entropy(t) for t in cleaned) / len(texts),
        mean_tokens=sum(len(t) for t in toks) / len(texts),
        samples=tuple(Sample(p, t, c) for p, t, c in zip(prompts, texts, chat)),
    )


@dataclass(frozen=True)
class MutingProbe:
    """The fixed generation probe set. Chat prompts go through the tokenizer's chat template when it
    has one (and are asked as plain text otherwise)."""

    completions: tuple[str, ...] = COMPLETION_PROMPTS
    questions: tuple[str, ...] = CHAT_PROMPTS
    max_new_tokens: int = 32

    def to_dict(self) -> dict:
        return {
            "completions": list(self.completions),
            "questions": list(self.questions),
            "max_new_tokens": self.max_new_tokens,
        }

    def render(self, tokenizer, prefix: str = "") -> list[tuple[str, list[int], bool]]:
        """Token ids of every prompt, ``prefix`` in front (inside the user turn for a chat prompt,
        as the probes put it)."""
        chat = bool(getattr(tokenizer, "chat_template", None))
        out = [(p, list(tokenizer(prefix + p).input_ids), False) for p in self.completions]
        for q in self.questions:
            if chat:
                ids = tokenizer.apply_chat_template(
                    [{"role": "user", "content": prefix + q}], add_generation_prompt=True, tokenize=True
                )
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
                out.append((q, list(ids), True))
            else:
                out.append((q, list(tokenizer(f"{prefix}Question: {q}\nAnswer:").input_ids), False))
        return out

    @torch.no_grad()
    def measure(self, model, tokenizer, batch_size: int = 16, prefix: str = "") -> MutingResult:
        """Greedy outputs of the model as it is now, scored (repeats counted in model tokens).
        ``prefix``: the edited model's context (``EditSession.edited()``'s ``prefix``)."""
        rendered = self.render(tokenizer, prefix)
        texts = greedy(model, tokenizer, [ids for _, ids, _ in rendered], self.max_new_tokens, batch_size)
        special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
        return score_outputs(
            [p for p, _, _ in rendered],
            texts,
            tokenize=lambda t: tokenizer(t, add_special_tokens=False).input_ids,
            special=special,
            chat=[c for _, _, c in rendered],
        )


@dataclass(frozen=True)
class HeldoutScore:
    """One held-out paragraph under the model as it is: summed next-token NLL (nats), how many
    next tokens the greedy choice got right, and how many tokens were scored."""

    nll: float
    correct: int
    tokens: int


@torch.no_grad()
def heldout_text(
    model, tokenizer, paragraphs: Sequence[str], max_tokens: int = 128, batch_size: int = 8, prefix: str = ""
) -> list[HeldoutScore]:
    """Perplexity and next-token accuracy on held-out text, per paragraph (so intervals can be
    bootstrapped over paragraphs). Each paragraph is cut to ``max_tokens`` tokens; ``prefix`` (an
    in-context edit's context) goes in front and is not scored. Perplexity = exp(Σ nll / Σ tokens)."""
    device = next(model.parameters()).device
    pre = list(tokenizer(prefix, add_special_tokens=False).input_ids) if prefix else []
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    seqs = []
    for p in paragraphs:
        ids = list(tokenizer(p, add_special_tokens=False).input_ids)[:max_tokens]
        seqs.append((bos + pre, ids))
    out: list[HeldoutScore] = []
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        width = max(len(a) + len(b) for a, b in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for j, (a, b) in enumerate(chunk):
            row = a + b
            ids[j, : len(row)] = torch.tensor(row, device=device)
            mask[j, : len(row)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for j, (a, b) in enumerate(chunk):
            # position t predicts token t+1; score the paragraph's tokens after its first (or all, after a context)
            start = max(len(a), 1)
            targets = ids[j, start : len(a) + len(b)]
            lp = logp[j, start - 1 : len(a) + len(b) - 1]
            if not len(targets):
                continue
            nll = -lp.gather(-1, targets[:, None]).squeeze(-1)
            out.append(HeldoutScore(float(nll.sum()), int((lp.argmax(-1) == targets).sum()), int(len(targets))))
    return out

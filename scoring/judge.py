"""A pairwise AI judge: a vision-language model shown a prompt and two images, asked which wins.

The answer is read from token probabilities, not from generated text: the template
names one answer word per outcome (by default the letters A, B, C, D for left, right,
tie, both bad), and the judge's probability of each outcome is the softmax of the
model's raw next-token logits over the first tokens of those words at the first answer
position. Reading the raw logits (not ``generate``'s processed scores, as VQAScore
does) is deliberate: the template names every answer word, so a checkpoint's
repetition penalty would lower all four by amounts that depend on how often each
appears in the prompt. The outcome is the most probable answer; the four
probabilities and the share of the whole vocabulary's mass they hold are kept.

The model is loaded by :mod:`scoring.metrics.vlm` (the VQAScore loader): any chat
VLM transformers runs as image-text-to-text. Batches are left-padded and one
``generate`` step per batch. Position bias is handled by the caller: every pair is
judged in both orders (``arena.voting.judging``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

#: The outcomes a judge answers with, in the order of its probability columns.
JUDGE_OUTCOMES = ("left", "right", "tie", "both_bad")

DEFAULT_TEMPLATE = (
    "Two images were generated for the same text prompt.\n"
    'Prompt: "{prompt}"\n'
    "The first image is image A, the second image is image B. Which image is better, "
    "judging both how faithfully it shows the prompt and its visual quality?\n"
    "Answer with one letter: A if image A is better, B if image B is better, C if they "
    "are equally good, D if both are bad."
)
DEFAULT_ANSWERS = "left=A,right=B,tie=C,both_bad=D"


class JudgeTemplateError(ValueError):
    """A judge template or answer list that cannot be used; the message says how to fix it."""


def parse_answers(text: str) -> dict[str, str]:
    """``left=A,right=B,tie=C,both_bad=D`` -> {outcome: word}; every outcome once."""
    pairs = []
    for part in str(text).split(","):
        outcome, sep, word = part.partition("=")
        if not sep:
            raise JudgeTemplateError(
                f"judge answers {text!r}: expected OUTCOME=WORD for each of "
                f"{', '.join(JUDGE_OUTCOMES)}, comma-separated, e.g. {DEFAULT_ANSWERS}."
            )
        pairs.append((outcome, word))
    return checked_answers(pairs, repr(text))


def checked_answers(pairs, shown: str) -> dict[str, str]:
    """{outcome: word} in ``JUDGE_OUTCOMES`` order from (outcome, word) pairs, each outcome
    once with a non-empty word; ``shown`` names the input in the error."""
    answers: dict[str, str] = {}
    for outcome, word in pairs:
        outcome, word = str(outcome).strip(), str(word).strip()
        if outcome not in JUDGE_OUTCOMES or not word:
            raise JudgeTemplateError(
                f"judge answers {shown}: expected OUTCOME=WORD for each of "
                f"{', '.join(JUDGE_OUTCOMES)}, e.g. {DEFAULT_ANSWERS}."
            )
        if outcome in answers:
            raise JudgeTemplateError(f"judge answers {shown}: {outcome} is given twice.")
        answers[outcome] = word
    missing = [o for o in JUDGE_OUTCOMES if o not in answers]
    if missing:
        raise JudgeTemplateError(
            f"judge answers {shown}: no word for {', '.join(missing)}; e.g. {DEFAULT_ANSWERS}."
        )
    return {o: answers[o] for o in JUDGE_OUTCOMES}


@dataclass(frozen=True)
class JudgeTemplate:
    """The question asked for a pair (``{prompt}`` is replaced by the prompt's text) and
    the answer word of each outcome."""

    text: str = DEFAULT_TEMPLATE
    answers: Mapping[str, str] | None = None

    def __post_init__(self):
        if "{prompt}" not in self.text:
            raise JudgeTemplateError(
                "the judge template has no {prompt}: write {prompt} where the prompt's text "
                "goes, e.g. 'Prompt: \"{prompt}\". Which image is better? Answer A or B.'"
            )
        answers = (
            checked_answers(dict(self.answers).items(), repr(dict(self.answers)))
            if self.answers
            else parse_answers(DEFAULT_ANSWERS)
        )
        object.__setattr__(self, "answers", answers)

    def question(self, prompt: str) -> str:
        return self.text.replace("{prompt}", prompt)

    @property
    def digest(self) -> str:
        """A short hash of the text and the answers: the judge's name changes with them."""
        words = ",".join(f"{o}={self.answers[o]}" for o in JUDGE_OUTCOMES)
        return hashlib.sha256(f"{self.text}\0{words}".encode()).hexdigest()[:8]

    def as_details(self) -> dict:
        return {"template": self.text, "answers": dict(self.answers)}


@dataclass
class Verdicts:
    """One row per judged order: probabilities over ``JUDGE_OUTCOMES`` (rows sum to 1)
    and the share of the next-token mass the four answer tokens hold."""

    probs: np.ndarray  # (n, 4) float64
    answer_mass: np.ndarray  # (n,) float64

    def outcomes(self) -> list[str]:
        return [JUDGE_OUTCOMES[k] for k in np.argmax(self.probs, axis=1)]

    def details(self, k: int) -> dict:
        return {
            "probs": {o: float(p) for o, p in zip(JUDGE_OUTCOMES, self.probs[k], strict=True)},
            "answer_mass": float(self.answer_mass[k]),
        }


class PairJudge:
    """A VLM and a template: ``judge(pairs, prompts)`` -> :class:`Verdicts`."""

    def __init__(self, vlm, template: JudgeTemplate | None = None, name: str | None = None):
        self.vlm = vlm
        self.template = template or JudgeTemplate()
        self.name = name or f"{vlm.name}#{self.template.digest}"
        ids = [vlm.token_id(self.template.answers[o]) for o in JUDGE_OUTCOMES]
        if len(set(ids)) != len(ids):
            words = ", ".join(f"{o}={self.template.answers[o]}" for o in JUDGE_OUTCOMES)
            raise JudgeTemplateError(
                f"the answer words ({words}) start with the same token for {vlm.name}'s "
                "tokenizer, so their probabilities cannot be told apart: choose words that "
                "begin differently (e.g. the letters A, B, C, D)."
            )
        self.token_ids = ids

    @classmethod
    def load(
        cls,
        folder,
        device: str = "cpu",
        dtype=None,
        template: JudgeTemplate | None = None,
        name: str | None = None,
    ) -> PairJudge:
        """The VLM of ``folder`` with transformers' default (torchvision) image processing:
        no reference to match here, and several times faster on batches than PIL's."""
        from scoring.metrics.vlm import VisionLanguageModel

        vlm = VisionLanguageModel.load(folder, device, dtype, "judge", backend="torchvision")
        return cls(vlm, template, name)

    def details(self) -> dict:
        """What defines the judge: stored on its rater row, so every vote is traceable."""
        return {"name": self.name, "model": self.vlm.name, **self.template.as_details()}

    def judge(
        self, pairs: Sequence[tuple[PILImage.Image, PILImage.Image]], prompts: Sequence[str]
    ) -> Verdicts:
        """Row k: ``pairs[k]`` shown in that order (first = A = left) with ``prompts[k]``."""
        import torch

        if len(pairs) != len(prompts):
            raise ValueError(f"{len(pairs)} pairs for {len(prompts)} prompts")
        if not pairs:
            return Verdicts(np.zeros((0, 4)), np.zeros(0))
        step = self.vlm.next_token(
            [list(pair) for pair in pairs], [self.template.question(p) for p in prompts]
        )
        logits = step.logits.double()
        full = torch.softmax(logits, dim=-1)[:, self.token_ids]
        chosen = torch.softmax(logits[:, self.token_ids], dim=-1)
        return Verdicts(chosen.numpy().copy(), full.sum(dim=1).numpy().copy())

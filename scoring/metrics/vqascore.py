"""VQAScore (Lin et al., ECCV 2024): how likely a VLM answers "Yes" to "does this show <prompt>?".

What is computed, exactly (the definition t2v-metrics 3.0 implements for chat VLMs run with
transformers, e.g. its ``qwen2vl_model.py``):

* Question: the paper's template, ``Does this figure show "{prompt}"? Please answer yes
  or no.``, as one user turn after the image, through the model's own chat template with
  the generation prompt (for Qwen2-VL: the default system turn, ``<|im_start|>user``, the
  vision tokens, the question, ``<|im_start|>assistant\\n``).
* Answer: the first token of ``tokenizer.encode("Yes")`` (no special tokens added): for
  Qwen2's tokenizer the single token ``Yes``, for SentencePiece ones ``▁Yes``.
* Score: the softmax probability of that token at the first answer position, read from
  ``generate``'s first greedy step (``max_new_tokens=1``, ``do_sample=False``), i.e. after
  the logits processors of the checkpoint's ``generation_config.json`` (a repetition
  penalty, where it sets one, lowers every token of the prompt in that softmax), exactly as
  t2v-metrics reads ``outputs.scores[0]``. ``details`` keep ``p_no`` (the same for "No")
  and ``p_yes_raw`` (from the raw logits, without the processors).
* Model: any image-text-to-text chat model transformers loads (``scoring.metrics.vlm``);
  by default ``Qwen/Qwen2-VL-7B-Instruct``. The model's name is part of the version
  (``1:Qwen/Qwen2-VL-7B-Instruct``), so scores of two VLMs never mix. Images go through
  the model's processor as they are (for Qwen2-VL: both sides rounded to multiples of 28,
  3136..12845056 pixels, PIL bicubic -- qwen-vl-utils' defaults, which t2v-metrics uses).

Two deliberate differences from t2v-metrics' Qwen2-VL route: its default question for
Qwen models is ``Does this image show "{}"?`` (the paper's template is used here, as for
its LLaVA and CLIP-FlanT5 models), and it scores one image per ``generate`` call; here a
batch is one left-padded call (the attention mask keeps padding out of the positions and
of the repetition penalty, so batched and single scores agree to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric
from scoring.metrics.vlm import VisionLanguageModel
from scoring.weights import resolve

NAME = "vqascore"
QUESTION_TEMPLATE = 'Does this figure show "{prompt}"? Please answer yes or no.'
ANSWER, NEGATIVE = "Yes", "No"
DEFAULT_VLM = WeightFile("Qwen/Qwen2-VL-7B-Instruct", "config.json", is_folder=True)


def question(prompt: str) -> str:
    """The question for ``prompt`` (inserted as is: braces and quotes stay)."""
    return QUESTION_TEMPLATE.replace("{prompt}", prompt)


@register_metric
class VQAScore(Metric):
    name: ClassVar[str] = NAME
    version: ClassVar[str] = "1"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    auto_half: ClassVar[str] = "bf16"  # the VLMs are published in bf16; fp16 can overflow
    description: ClassVar[str] = (
        'VQAScore: P("Yes") of a chat VLM asked \'Does this figure show "<prompt>"? Please '
        "answer yes or no.' (t2v-metrics' definition); default Qwen2-VL-7B-Instruct, any "
        "transformers image-text-to-text model via --weights vqascore=FOLDER."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (DEFAULT_VLM,)

    def __init__(self, vlm: VisionLanguageModel, device: str = "cpu"):
        self.vlm = vlm
        self.device = device
        self.yes_id = vlm.token_id(ANSWER)
        self.no_id = vlm.token_id(NEGATIVE)
        # The VLM is part of what is measured: its name goes into the stored version.
        self.version = f"{type(self).version}:{vlm.name}"

    @classmethod
    def load(cls, request: LoadRequest) -> VQAScore:
        """The VLM folder: ``weights`` (a model folder), else the default repo in the weights
        folder or the Hugging Face cache; loaded by ``VisionLanguageModel.load``."""
        folder = resolve(NAME, DEFAULT_VLM, request.weights, request.sources)
        vlm = VisionLanguageModel.load(Path(folder), request.device, request.dtype, NAME)
        return cls(vlm, request.device)

    def probabilities(self, images: Sequence[PILImage.Image], prompts: Sequence[str]) -> np.ndarray:
        """(n, 3) float64: P(Yes), P(No) after the generation processors, raw P(Yes)."""
        import torch

        step = self.vlm.next_token([[image] for image in images], [question(p) for p in prompts])
        scores = torch.softmax(step.scores.double(), dim=-1)
        raw = torch.softmax(step.logits.double(), dim=-1)
        return torch.stack(
            [scores[:, self.yes_id], scores[:, self.no_id], raw[:, self.yes_id]], dim=1
        ).numpy()

    def score_with_details(
        self, inputs: Any, prompts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[dict | None] | None]:
        """P(Yes) per image; ``details``: ``p_no`` and ``p_yes_raw``."""
        self.check_prompts(inputs, prompts)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64), []
        probs = self.probabilities(inputs, prompts)
        details = [{"p_no": float(row[1]), "p_yes_raw": float(row[2])} for row in probs]
        return probs[:, 0].copy(), details

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        return self.score_with_details(inputs, prompts)[0]

    def score(
        self, images: Sequence[PILImage.Image], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        return self.score_inputs(list(images), prompts)

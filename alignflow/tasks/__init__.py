"""Verifiable tasks: problem generators and readers that write prompt files with exact answers,
and the exact-match rewards that check responses against them.

* ``alignflow.tasks.arithmetic`` -- seeded arithmetic problems (``alignflow data arithmetic``).
* ``alignflow.tasks.gsm8k`` -- GSM8K word problems (``alignflow data gsm8k``).
* ``alignflow.tasks.answers`` -- final-answer extraction and ``exact_match`` (shared by both).
* ``alignflow.tasks.prompts`` -- the question template and few-shot examples of a prompt.
"""

from alignflow.tasks.answers import exact_match, extract_answer, is_correct, reference_answer
from alignflow.tasks.prompts import Problem, PromptFormat

__all__ = ["Problem", "PromptFormat", "exact_match", "extract_answer", "is_correct", "reference_answer"]

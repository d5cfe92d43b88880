"""What a generation request may ask, checked before any model runs: plain Python, so the page
and the command line refuse a bad prompt without loading TensorFlow."""

from __future__ import annotations

import math

from fedtext.text.vocab import describe_chars, normalise

TUTORIAL_PROMPT = "What of TensorFlow Federated, you ask? "
MAX_LENGTH = 2000  # characters per request; a page visitor cannot ask for more
MAX_PROMPT = 1000


class PromptError(ValueError):
    """A prompt or sampling setting that cannot be used, with a one-line reason."""


def check_request(prompt: str, length: int, temperature: float) -> str:
    """The normalised prompt, or PromptError saying what is wrong."""
    if not isinstance(prompt, str) or not prompt:
        raise PromptError("the prompt is empty: type at least one character")
    if len(prompt) > MAX_PROMPT:
        raise PromptError(f"the prompt is {len(prompt)} characters long; at most {MAX_PROMPT}")
    result = normalise(prompt)
    if result.dropped:
        unknown = describe_chars(sorted(result.dropped))
        raise PromptError(f"the prompt has characters the model does not know: {unknown}")
    if not result.text:
        raise PromptError("the prompt has no characters the model knows")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_LENGTH:
        raise PromptError(f"length must be a whole number from 1 to {MAX_LENGTH}, got {length!r}")
    if (
        not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or not (0.01 <= temperature <= 5)
    ):
        raise PromptError(f"temperature must lie between 0.01 and 5, got {temperature!r}")
    return result.text

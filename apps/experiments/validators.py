"""Validators on the experiment models' fields, so forms and DRF ModelSerializers enforce the same bounds."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible


@deconstructible
class PromptLengthValidator:
    """A prompt or system prompt at most `settings.PROMPT_MAX_CHARS` characters long, read when validating
    (not at import), so the setting and tests that override it take effect."""

    code = "prompt_too_long"

    def __call__(self, value: str) -> None:
        limit = settings.PROMPT_MAX_CHARS
        length = len(value or "")
        if length > limit:
            raise ValidationError(
                "This is %(length)s characters long; the limit is %(limit)s characters (the PROMPT_MAX_CHARS "
                "setting). Shorten it.",
                code=self.code,
                params={"length": f"{length:,}", "limit": f"{limit:,}"},
            )

    def __eq__(self, other) -> bool:
        return isinstance(other, PromptLengthValidator)

    def __hash__(self) -> int:
        return hash(self.code)

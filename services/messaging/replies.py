"""What a client's reply means: confirm, cancel, stop, start, or nothing we may guess.

Only a whole reply that is one of the accepted answers counts: ``1``, «да», «подтверждаю» confirm;
``2``, «нет», «отмена» cancel; «стоп» opts out and «старт» back in. Case, surrounding spaces,
punctuation and emoji do not matter. Anything longer — «спасибо, но не приду», «да, но опоздаю» —
is stored for the salon as it is, never read as a yes or a no.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Meaning(StrEnum):
    """How a reply is interpreted."""

    CONFIRM = "confirm"
    CANCEL = "cancel"
    STOP = "stop"
    START = "start"
    OTHER = "other"


ANSWERS: dict[str, Meaning] = {
    "1": Meaning.CONFIRM, "да": Meaning.CONFIRM, "подтверждаю": Meaning.CONFIRM,
    "2": Meaning.CANCEL, "нет": Meaning.CANCEL, "отмена": Meaning.CANCEL,
    "стоп": Meaning.STOP, "stop": Meaning.STOP,
    "старт": Meaning.START, "start": Meaning.START,
}
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(text: str) -> str:
    """Lower case, ``ё`` as ``е``, and no punctuation, symbols or spaces at either end."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    return _EDGE.sub("", folded.strip())


def interpret(text: object) -> Meaning:
    """The meaning of a reply (``OTHER`` for anything that is not exactly one accepted answer)."""
    if not isinstance(text, str) or len(text) > 64:
        return Meaning.OTHER
    return ANSWERS.get(normalise(text), Meaning.OTHER)

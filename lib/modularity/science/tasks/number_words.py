"""English number words, as the study writes them ("five hundred and seventeen")."""
from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts.append(f"{_ONES[hundreds]} hundred")
    if rest:
        if rest < 20:
            tail = _ONES[rest]
        else:
            tens, ones = divmod(rest, 10)
            tail = _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
        # British-style "and" after the hundreds, as in the study's answers.
        parts.append(("and " if hundreds else "") + tail)
    return " ".join(parts)


def number_to_words(n: int) -> str:
    """Spell an integer in English words (|n| < 10**9): 1302 → "one thousand, three hundred and two".

    Thousands are followed by a comma when more follows, and "and" joins hundreds to
    the rest; negative numbers start with "minus".
    """
    if not isinstance(n, int):
        raise TypeError(f"number_to_words needs an int, got {type(n).__name__}")
    if abs(n) >= 10**9:
        raise ValueError(f"number_to_words supports |n| < 1e9, got {n}")
    if n < 0:
        return "minus " + number_to_words(-n)
    if n == 0:
        return "zero"
    millions, rest = divmod(n, 10**6)
    thousands, units = divmod(rest, 1000)
    groups = []
    if millions:
        groups.append(f"{_below_thousand(millions)} million")
    if thousands:
        groups.append(f"{_below_thousand(thousands)} thousand")
    head = ", ".join(groups)
    if not units:
        return head
    if groups and units < 100:
        return f"{head} and {_below_thousand(units)}"
    return f"{head}, {_below_thousand(units)}" if groups else _below_thousand(units)

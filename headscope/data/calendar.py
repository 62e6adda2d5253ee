"""Written dates and their ISO form, generated for the dates model (standard library only).

Every calendar date from 1900-01-01 to 2099-12-31 can be written in many ways:
  day first     Wednesday, the 25th of November 2026   25 Nov. 2026   25th November, 2026
  month first   November 25, 2026   NOV. 1st, 1900   Sept. the 3rd 1999
  numeric       25/11/2026   5.3.1999   05-03-1999   (always day first, then month)
  ISO           2026-11-25
with full or three-letter month names (with or without a dot, and Sept for September),
ordinal suffixes or plain numbers, an optional leading weekday that matches the date, and
any capitalisation (lower, Title, UPPER or a random mix of both). The target is always ISO.

Held-out split: a fixed tenth of the calendar dates, chosen by a hash of the ISO string, never
appears in training (`is_heldout`). `heldout_examples` makes the held-out test set, so its
accuracy measures how well the model does on dates it has never seen in any form.
"""

import datetime
import hashlib
import random

FIRST = datetime.date(1900, 1, 1)
LAST = datetime.date(2099, 12, 31)
DAYS = (LAST - FIRST).days + 1  # 73049 calendar dates

MONTHS = ("January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FORMS = ("day_first", "month_first", "numeric", "iso")
FORM_WEIGHTS = (35, 35, 25, 5)
CASES = ("title", "lower", "upper", "mixed")
VERBOSE_SHARE = 1 / 3  # of written and numeric dates, see write_date
HELDOUT_EVERY = 10  # one date in ten is held out


def is_heldout(date: datetime.date) -> bool:
    """True for the dates kept out of training: a fixed tenth, chosen by a hash of the ISO form."""
    digest = hashlib.sha256(date.isoformat().encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELDOUT_EVERY == 0


def ordinal(n: int) -> str:
    """1 -> 1st, 2 -> 2nd, 3 -> 3rd, 11 -> 11th, 22 -> 22nd."""
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def month_name(month: int, rng: random.Random, full: bool) -> str:
    """The full name, or three letters with or without a dot (Sept and Sept. too for September)."""
    name = MONTHS[month - 1]
    if full:
        return name
    choices = [name[:3], name[:3] + "."] + (["Sept", "Sept."] if month == 9 else [])
    return rng.choice(choices)


def weekday_prefix(date: datetime.date, rng: random.Random, p: float) -> str:
    """With probability p the real weekday, full or three letters, with or without a comma:
    'Wednesday, ', 'Wed ', 'Wed, '; otherwise ''."""
    if rng.random() >= p:
        return ""
    name = WEEKDAYS[date.weekday()]
    name = name if rng.random() < 0.5 else name[:3]
    return name + (", " if rng.random() < 0.5 else " ")


def day_number(day: int, rng: random.Random, p_ordinal: float) -> str:
    """25th (with probability p_ordinal), else 25, or 05 now and then for a single digit."""
    if rng.random() < p_ordinal:
        return ordinal(day)
    if day < 10 and rng.random() < 0.2:
        return f"0{day}"
    return str(day)


def apply_case(text: str, case: str, rng: random.Random) -> str:
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "mixed":
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
    return text  # "title": month and weekday names capitalised, the rest as written


def write_date(date: datetime.date, rng: random.Random, form: str | None = None) -> str:
    """One written form of `date`, drawn from `rng` (a form from FORMS if given).

    A third of the written dates are "verbose": each optional part (weekday, `the`, `of`,
    ordinal, full month name, comma) is then likely rather than a coin toss, so that long
    texts like `Wednesday, the 25th of November, 2026` are common enough to be learned.
    """
    form = form or rng.choices(FORMS, FORM_WEIGHTS)[0]
    if form == "iso":
        return date.isoformat()
    verbose = rng.random() < VERBOSE_SHARE

    def maybe(p: float) -> bool:
        return rng.random() < (0.85 if verbose else p)

    if form == "numeric":
        sep = rng.choice("/.-")
        pad = rng.random()
        day = f"{date.day:02d}" if pad < 0.4 or (pad < 0.6 and rng.random() < 0.5) else str(date.day)
        month = f"{date.month:02d}" if pad < 0.4 or (pad < 0.6 and rng.random() < 0.5) else str(date.month)
        prefix = weekday_prefix(date, rng, 0.85 if verbose else 0.4)
        return apply_case(prefix, rng.choice(CASES), rng) + f"{day}{sep}{month}{sep}{date.year}"
    prefix = weekday_prefix(date, rng, 0.85 if verbose else 0.4)
    the = "the " if maybe(0.3) else ""
    day = day_number(date.day, rng, 0.85 if verbose else 0.5)
    month = month_name(date.month, rng, full=maybe(0.5))
    comma = "," if maybe(0.5) else ""
    if form == "day_first":
        of = " of" if maybe(0.3) else ""
        text = f"{the}{day}{of} {month}{comma} {date.year}"
    elif form == "month_first":
        text = f"{month} {the}{day}{comma} {date.year}"
    else:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    return apply_case(prefix + text, rng.choice(CASES), rng)


def random_date(rng: random.Random, heldout: bool = False) -> datetime.date:
    """A uniformly drawn date from the training dates, or from the held-out ones."""
    while True:
        date = FIRST + datetime.timedelta(days=rng.randrange(DAYS))
        if is_heldout(date) == heldout:
            return date


def examples(n: int, seed: int, heldout: bool = False) -> list[tuple[str, str]]:
    """n (written date, ISO date) pairs over training dates (or held-out ones), seeded."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        date = random_date(rng, heldout)
        pairs.append((write_date(date, rng), date.isoformat()))
    return pairs


def heldout_examples(n: int = 2000, seed: int = 1234) -> list[tuple[str, str]]:
    """The held-out test set: n pairs whose dates never occur in training, over all forms."""
    return examples(n, seed, heldout=True)


def training_stream(seed: int, batch_size: int):
    """Endless batches of training pairs (dates that are not held out), seeded."""
    rng = random.Random(seed)
    while True:
        batch = []
        for _ in range(batch_size):
            date = random_date(rng)
            batch.append((write_date(date, rng), date.isoformat()))
        yield batch


if __name__ == "__main__":
    for text, iso in examples(20, seed=0):
        print(f"{text!r:45} -> {iso}")

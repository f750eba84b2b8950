"""A paper's claim checked against this run's numbers, shown as a clearly marked box in a notebook.

``Claim(text, holds, evidence)`` renders as a quoted Markdown box that starts with "The paper's claim
holds here" or "NOT reproduced here", so a figure that does not show what the paper says carries the
warning right beside it. The verdict is computed by the caller from measured values, never typed.
"""


class Claim:
    def __init__(self, claim, holds, evidence):
        self.claim, self.holds, self.evidence = claim, bool(holds), evidence

    def verdict(self):
        return "The paper's claim holds here" if self.holds else "NOT reproduced here"

    def _repr_markdown_(self):
        mark = "✅" if self.holds else "⚠️"
        return f"> {mark} **{self.verdict()}.** *Paper:* {self.claim}  \n> *Measured:* {self.evidence}"

    def __repr__(self):
        return f"[{self.verdict()}] paper: {self.claim} | measured: {self.evidence}"

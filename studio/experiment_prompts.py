"""An experiment's prompts: typed lines, or a CSV with a `prompt` column and optional settings.

Pure: text in, rows (or sentences that name the line at fault) out. A CSV may be quoted the
usual way (a prompt with commas, quotes or line breaks in double quotes), separated by commas,
semicolons or tabs (read from its header), and may carry any of the settings columns
(`aspect_ratio`, `resolution`, `output_format`, `routing`; "aspect ratio" also works) for its
row; other columns are ignored and named in a note. Blank lines are skipped. A row with no
prompt, or with more fields than the header, is refused with a sentence naming its line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from providers.capabilities import NO_SETTINGS, SETTING_NAMES, ImageSettings

MAX_PROMPTS = 100  # rows of one experiment
MAX_CSV_BYTES = 1_000_000
MAX_SENTENCES = 8  # refusals listed at once; the rest are counted


class PlanError(ValueError):
    """The experiment cannot be planned; `sentences` say why, each naming what is at fault."""

    def __init__(self, sentences: Sequence[str]) -> None:
        self.sentences = tuple(sentences)
        shown = list(self.sentences[:MAX_SENTENCES])
        if len(self.sentences) > MAX_SENTENCES:
            shown.append(f"… and {len(self.sentences) - MAX_SENTENCES} more.")
        super().__init__(" ".join(shown))


@dataclass(frozen=True)
class PromptRow:
    """One row of the grid: a prompt and the settings its CSV row gave (if any)."""

    prompt: str
    settings: ImageSettings = NO_SETTINGS
    where: str = ""  # "prompt 2" or "CSV line 4": how sentences name the row

    def as_dict(self) -> dict[str, object]:
        return {"prompt": self.prompt, "settings": self.settings.given(), "where": self.where}

    @classmethod
    def from_dict(cls, value: dict[str, object]) -> PromptRow:
        settings = value.get("settings")
        return cls(
            prompt=str(value["prompt"]),
            settings=ImageSettings.from_mapping(settings if isinstance(settings, dict) else {}),
            where=str(value.get("where") or ""),
        )


def prompt_lines(text: str | None) -> list[PromptRow]:
    """One prompt per non-blank line."""
    lines = [line.strip() for line in (text or "").splitlines()]
    prompts = [line for line in lines if line]
    return [PromptRow(p, where=f"prompt {i}") for i, p in enumerate(prompts, start=1)]


def _column_name(header: str) -> str:
    return header.strip().lstrip("\ufeff").strip().lower().replace(" ", "_").replace("-", "_")


def _delimiter(text: str) -> str:
    """The separator the header uses most: comma, semicolon (spreadsheets in many locales)
    or tab; quoting is always the usual double quotes."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return max(",;\t", key=lambda sep: (first.count(sep), sep == ","))


def prompt_csv(text: str) -> tuple[list[PromptRow], list[str]]:
    """The rows of a CSV and notes about it (ignored columns); PlanError names bad lines."""
    if len(text.encode("utf-8", "replace")) > MAX_CSV_BYTES:
        raise PlanError([f"The CSV is larger than {MAX_CSV_BYTES // 1_000_000} MB."])
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header: list[str] | None = None
    rows: list[PromptRow] = []
    problems: list[str] = []
    line = 1  # where the next record starts
    try:
        for record in reader:
            where, line = f"CSV line {line}", reader.line_num + 1
            if not any(field.strip() for field in record):
                continue  # a blank line
            if header is None:
                header = [_column_name(name) for name in record]
                if "prompt" not in header:
                    names = ", ".join(name for name in header if name) or "nothing"
                    raise PlanError(
                        [f"The CSV needs a 'prompt' column in its first row; it has: {names}."]
                    )
                continue
            extra = [field for field in record[len(header) :] if field.strip()]
            if extra:
                problems.append(
                    f"{where} has {len(record)} fields but the header has {len(header)}; "
                    "put a prompt that contains the separator in double quotes."
                )
                continue
            values = dict(zip(header, (field.strip() for field in record), strict=False))
            prompt = values.get("prompt", "")
            if not prompt:
                problems.append(f"{where} has no prompt.")
                continue
            settings = ImageSettings.from_mapping({k: values.get(k) for k in SETTING_NAMES})
            rows.append(PromptRow(prompt, settings, where))
    except csv.Error as exc:
        problems.append(f"CSV line {line} cannot be read: {exc}.")
    if header is None:
        raise PlanError(["The CSV is empty; its first row must name a 'prompt' column."])
    if problems:
        raise PlanError(problems)
    ignored = [n for n in header if n and n != "prompt" and n not in SETTING_NAMES]
    notes = [f"CSV columns ignored: {', '.join(ignored)}."] if ignored else []
    return rows, notes


def read_prompts(
    text: str | None, csv_text: str | None = None
) -> tuple[list[PromptRow], list[str]]:
    """The typed prompts, then the CSV's rows; notes about the CSV. PlanError when there are
    none, too many, or bad CSV lines."""
    rows = prompt_lines(text)
    notes: list[str] = []
    if csv_text is not None and csv_text.strip():
        csv_rows, notes = prompt_csv(csv_text)
        rows += csv_rows
    if not rows:
        raise PlanError(
            ["Write at least one prompt (one per line), or upload a CSV with a 'prompt' column."]
        )
    if len(rows) > MAX_PROMPTS:
        raise PlanError([f"{len(rows)} prompts is too many: at most {MAX_PROMPTS}."])
    return rows, notes

"""The history query: filters, paging and prompt search, built as SQL text and arguments.

Prompt search is a case-insensitive substring match of every whitespace-separated word. Words
of three characters or more use the FTS5 trigram index when the connection has it; shorter
words (the trigram tokenizer cannot match them) and every word without the index use a scan
with Python's `str.casefold`, which is fine for thousands of rows.
"""

from __future__ import annotations

from typing import Any

from studio.lifecycle import JobState

FOLD_FUNCTION = "ledger_fold"  # the SQL name under which each connection registers `fold`
TRIGRAM_MIN = 3  # the trigram tokenizer cannot match shorter substrings


def fold(text: str | None) -> str:
    """Case-fold for matching: registered as the SQL function `ledger_fold`."""
    return (text or "").casefold()


def fts_phrase(term: str) -> str:
    """`term` as one FTS5 phrase: quoted, so its punctuation is matched, not parsed."""
    return '"' + term.replace('"', '""') + '"'


def history_query(
    owner: str | None,
    *,
    search: str = "",
    model: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
    full_text_search: bool = False,
) -> tuple[str, list[Any]]:
    """The SELECT for one history page (jobs newest first) and its arguments.

    `owner=None` means everyone (single-user mode); empty `model`/`state` mean any. Raises
    ValueError for a negative `limit`/`offset` or a `state` that is no JobState.
    """
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where: list[str] = []
    args: list[Any] = []
    if owner is not None:
        where.append("j.owner = ?")
        args.append(owner)
    if model:
        where.append("j.model = ?")
        args.append(model)
    if state:
        where.append("j.state = ?")
        args.append(str(JobState(state)))
    words = search.split()
    indexed = [w for w in words if len(w) >= TRIGRAM_MIN] if full_text_search else []
    if indexed:
        where.append("j.job_id IN (SELECT job_id FROM jobs_fts WHERE jobs_fts MATCH ?)")
        args.append(" AND ".join(fts_phrase(w) for w in indexed))
    for word in words:
        if word not in indexed:
            where.append(f"instr({FOLD_FUNCTION}(j.prompt), ?) > 0")
            args.append(word.casefold())
    sql = "SELECT j.* FROM jobs j"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY j.created_at DESC, j.job_id DESC LIMIT ? OFFSET ?"
    return sql, [*args, limit, offset]

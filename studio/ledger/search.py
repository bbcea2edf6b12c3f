"""The history query: filters, paging and prompt search, built as SQL text and arguments.

Prompt search is a case-insensitive substring match of every whitespace-separated word. Words
of three characters or more use the FTS5 trigram index when the connection has it; shorter
words (the trigram tokenizer cannot match them) and every word without the index are checked
with Python's `str.casefold` on each row the query reads, which is fine for thousands of rows.

Newest first is `seq DESC` (see `studio.ledger.schema`). Without an indexed word the query
reads the filter's index backwards from its newest entry; with one it reads the search index's
matches backwards by rowid (which is `seq`) and looks each job up, so in both cases it stops
after one page: nothing is sorted, whatever the number of jobs or matches. The filters are
then checked on each match read; a search whose matches mostly fail the filters reads more of
them (at worst every match, still without a sort).
"""

from __future__ import annotations

from typing import Any

from studio.lifecycle import JobState

FOLD_FUNCTION = "ledger_fold"  # the SQL name under which each connection registers `fold`
TRIGRAM_MIN = 3  # the trigram tokenizer cannot match shorter substrings
# The experiment a job is a cell of (its params carry the id): indexed (schema version 5).
EXPERIMENT_KEY = "json_extract(params, '$.experiment')"


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
    starred: bool = False,
    experiment: str | None = None,
    limit: int = 50,
    offset: int = 0,
    full_text_search: bool = False,
) -> tuple[str, list[Any]]:
    """The SELECT for one history page (jobs newest first) and its arguments.

    `owner=None` means everyone (single-user mode); empty `model`/`state`/`experiment` mean
    any (an experiment's jobs are read through their own index, in time order). Raises
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
    if starred:
        where.append("j.starred = 1")
    if experiment:
        where.append(f"{EXPERIMENT_KEY.replace('params', 'j.params')} = ?")
        args.append(experiment)
    words = search.split()
    indexed = [w for w in words if len(w) >= TRIGRAM_MIN] if full_text_search else []
    for word in words:
        if word not in indexed:
            where.append(f"instr({FOLD_FUNCTION}(j.prompt), ?) > 0")
            args.append(word.casefold())
    if indexed:
        # CROSS JOIN keeps the search index outside: its matches come newest first.
        sql = "SELECT j.* FROM jobs_fts f CROSS JOIN jobs j ON j.seq = f.rowid"
        where.insert(0, "f.jobs_fts MATCH ?")
        args.insert(0, " AND ".join(fts_phrase(w) for w in indexed))
        order = "f.rowid DESC"
    else:
        sql = "SELECT j.* FROM jobs j"
        order = "j.seq DESC"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    return sql, [*args, limit, offset]


# The latest finished jobs, newest first, each with the moment its success was first seen (its
# first `saving` event): what the poll schedule learns from at start-up. It reads the `state`
# index backwards and stops at the limit, however long the history.
RECENT_RUN_TIMES = (
    "SELECT j.model, j.params, j.submitted_at, "
    "(SELECT min(e.at) FROM job_events e WHERE e.job_id = j.job_id AND e.state = ?) AS seen_at "
    "FROM jobs j WHERE j.state = ? AND j.submitted_at IS NOT NULL ORDER BY j.seq DESC LIMIT ?"
)


def recent_run_times_query(limit: int) -> tuple[str, list[Any]]:
    """The SELECT for the run times of the latest `limit` finished jobs, and its arguments."""
    if limit < 0:
        raise ValueError("limit must not be negative")
    return RECENT_RUN_TIMES, [str(JobState.SAVING), str(JobState.DONE), limit]

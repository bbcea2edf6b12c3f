"""Who is calling, from the handlers' `gr.Request`: the Visitor the limits on the owner's keys
count (a browser id and a network address; see studio.visitors for which forwarded headers
are believed). Every event that can start a task passes its request here, page and API alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import gradio as gr

from components.handlers import Studio
from components.history_handlers import valid_client_id
from studio.visitors import UNKNOWN_VISITOR, Visitor


def _forwarded(headers: Any) -> Sequence[str]:
    """Every X-Forwarded-For value, in order (a header may come more than once)."""
    if headers is None:
        return ()
    if hasattr(headers, "getlist"):
        return list(headers.getlist("x-forwarded-for"))
    value = headers.get("x-forwarded-for") if hasattr(headers, "get") else None
    return [str(value)] if value else []


def visitor_of(studio: Studio, request: gr.Request | None, client_id: str | None) -> Visitor:
    """The caller as a Visitor: its browser id (when it is one this app minted, in form) and
    its network address, or its login name with named logins."""
    if request is None:
        return UNKNOWN_VISITOR
    try:
        client = request.client
        headers = request.headers
    except AttributeError:  # a request made inside the process, without a connection
        return UNKNOWN_VISITOR
    peer = getattr(client, "host", None)
    return studio.visitors.visitor(
        client_id if valid_client_id(client_id) else "",
        peer,
        _forwarded(headers),
        getattr(request, "username", None),
    )


def document_endpoint(fn: Any, documented: inspect.Signature, doc: str) -> None:
    """Give an API handler its documented parameters and docstring (what the API page, the
    client and the MCP tools show), after the `gr.Request` Gradio fills in and leaves out."""
    request = inspect.Parameter(
        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request
    )
    fn.__signature__ = documented.replace(parameters=[request, *documented.parameters.values()])
    fn.__doc__ = doc

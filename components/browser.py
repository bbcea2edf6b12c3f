"""What runs in the browser itself: page scripts, the style, and where the browser keeps things.

Visitor keys live only in the browser's storage and reach the server only with a generation, so
filling and storing the key boxes is JavaScript, never a server round trip.
"""

from __future__ import annotations

import json

from providers.catalog import Catalog

KEY_STORAGE = "image-studio-keys"
CLIENT_STORAGE = "image-studio-client"

# Two conveniences Gradio's components lack, attached once the page is mounted (the attribute
# set at the end tells scripts driving the page that they are live):
# - Ctrl+Enter / Cmd+Enter in the prompt clicks Generate;
# - an image pasted anywhere on the page is added to the reference images, through the file
#   box's own input, so it goes through the same upload, trimming and checks as a picked file.
#   A paste into a text box that carries text stays a text paste.
PAGE_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!event.target.closest || !event.target.closest("#prompt")) return;
    event.preventDefault();
    document.querySelector("#generate")?.click();
  });
  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    const images = Array.from(data?.files ?? []).filter((f) => f.type.startsWith("image/"));
    if (!images.length) return;
    const typing = event.target.closest?.("textarea, input, [contenteditable]");
    if (typing && data.getData("text/plain")) return;
    const input = document.querySelector("#references input[type=file]");
    if (!input) return;
    event.preventDefault();
    const transfer = new DataTransfer();
    images.forEach((file) => transfer.items.add(file));
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  document.documentElement.dataset.shortcuts = "on";
}
"""

# Each browser gets an unguessable id of its own, kept in its storage, so that on a shared
# deployment it sees only its own history.
CLIENT_ID_JS = """
(id) => {
  if (id && id.length >= 32) return id;
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
"""

CSS = """
#status textarea { font-family: ui-monospace, monospace; font-size: 0.85rem; }
footer { display: none !important; }
"""


def keys_js(catalog: Catalog) -> tuple[str, str]:
    """Browser-side functions that fill the key boxes from storage and store them back.

    Keys never go to the server except with a generation, so both run as JavaScript only.
    (A key stored under the field's old short name, e.g. "apixo", is still read.)"""
    fields = json.dumps(catalog.key_fields)
    load = f"(k) => {fields}.map((f) => k?.[f] ?? k?.[f.replace(/_key$/, '')] ?? '')"
    store = f"(...v) => Object.fromEntries({fields}.map((f, i) => [f, v[i] ?? '']))"
    return load, store

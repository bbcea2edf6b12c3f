"""What runs in the browser itself: page scripts, the style, and where the browser keeps things.

Visitor keys live only in the browser's storage and reach the server only with a generation, so
filling and storing the key boxes is JavaScript, never a server round trip.
"""

from __future__ import annotations

import json

from providers.catalog import Catalog

KEY_STORAGE = "image-studio-keys"
CLIENT_STORAGE = "image-studio-client"
FORM_STORAGE = "image-studio-form"
# The form fields kept in the browser across reloads, in the order the form's JS passes them.
FORM_KEPT = (
    "model",
    "prompt",
    "aspect_ratio",
    "resolution",
    "output_format",
    "routing",
    "variants",
)

# Conveniences Gradio's components lack, attached once the page is mounted (the attribute set at
# the end tells scripts driving the page that they are live):
# - Ctrl+Enter / Cmd+Enter in the prompt clicks Generate;
# - a card's "Copy id" button copies its task id;
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
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("button.copy-id");
    if (!button) return;
    navigator.clipboard?.writeText(button.dataset.copy || "");
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy id"; }, 1500);
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

# After "Edit this": the prompt is where the next instruction goes; its text is selected, so
# typing replaces it and an arrow key keeps it.
FOCUS_PROMPT_JS = """
() => {
  const box = document.querySelector("#prompt textarea");
  if (box) { box.focus(); box.select(); box.scrollIntoView({ block: "center" }); }
}
"""

# After Generate on a narrow screen (the feed is below the form), bring the new card into view.
SHOW_FEED_JS = """
() => {
  const feed = document.querySelector("#feed");
  if (!feed) return;
  const top = feed.getBoundingClientRect().top;
  if (top > window.innerHeight * 0.8) feed.scrollIntoView({ behavior: "smooth", block: "start" });
}
"""

SHOW_COMPARE_JS = """
() => document.querySelector("#compare")?.scrollIntoView({ behavior: "smooth", block: "start" })
"""

CSS = """
footer { display: none !important; }
.gradio-container { max-width: 1600px !important; }
#masthead { align-items: baseline; gap: 1rem; }
#masthead h1 { font-size: 1.35rem; margin: 0; }
#offline-notice p { margin: 0; }
#form-feedback { min-height: 1.5rem; }
#form-message p, #running p, #left p { margin: 0; }
#pixel-size p { margin: 0; font-size: 0.85rem; opacity: 0.8; }
.card { padding: 0.25rem 0.5rem 0; }
.card-prompt { font-weight: 600; margin: 0 0 0.15rem; overflow-wrap: anywhere; }
.card-facts { margin: 0 0 0.4rem; font-size: 0.85rem; opacity: 0.8; }
.task { margin: 0.3rem 0; }
.task-head { display: flex; gap: 0.5rem; font-size: 0.9rem; flex-wrap: wrap; }
.task-name { font-weight: 600; }
.bar { height: 6px; border-radius: 3px; background: rgba(127,127,127,0.2); overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--color-accent); }
.bar.indeterminate span { width: 30%; animation: slide 1.4s ease-in-out infinite; }
@keyframes slide { from { margin-left: -30%; } to { margin-left: 100%; } }
.task-error { color: var(--error-text-color, #b91c1c); margin: 0.25rem 0; }
.task-note { margin: 0.25rem 0; font-size: 0.9em; }
.task details { font-size: 0.8rem; opacity: 0.85; }
.task details p { margin: 0.15rem 0; }
.copy-id { border: 1px solid rgba(127,127,127,0.4); border-radius: 4px; padding: 0 0.4rem; }
/* A result is shown whole: no scroll box around the grid, each image contained in a cell no
   taller than a screen's half, whatever its shape. */
.card-results .grid-wrap { height: auto !important; max-height: none !important;
  min-height: 0 !important; overflow: visible !important; }
.card-results .thumbnail-item { aspect-ratio: auto !important; height: auto !important; }
.card-results .thumbnail-item img { object-fit: contain !important; width: 100%;
  height: auto !important; max-height: 55vh; }
#settings .wrap { gap: 0.25rem; }
#settings .wrap label { padding: 0.3rem 0.5rem; }
#model-info p { margin: 0; font-size: 0.85rem; }
/* History's results are a strip of small, whole thumbnails, however few there are. */
#history-thumbnails .grid-container { grid-template-columns: repeat(auto-fill, 150px) !important;
  grid-auto-rows: 150px !important; }
#history-thumbnails .thumbnail-item { width: 150px; height: 150px; }
#history-thumbnails .thumbnail-item img { object-fit: contain !important; }
@media (max-width: 700px) {
  #masthead { flex-wrap: nowrap; }
  #masthead h1 { font-size: 1.1rem; }
  #title p { display: none; }
  #offline-notice p { font-size: 0.75rem; line-height: 1.2; }
  #model-info { display: none; }
  #settings .wrap label { padding: 0.2rem 0.4rem; }
}
"""


def keys_js(catalog: Catalog) -> tuple[str, str]:
    """Browser-side functions that fill the key boxes from storage and store them back.

    Keys never go to the server except with a generation, so both run as JavaScript only.
    (A key stored under the field's old short name, e.g. "apixo", is still read.)"""
    fields = json.dumps(catalog.key_fields)
    load = f"(k) => {fields}.map((f) => k?.[f] ?? k?.[f.replace(/_key$/, '')] ?? '')"
    store = f"(...v) => Object.fromEntries({fields}.map((f, i) => [f, v[i] ?? '']))"
    return load, store


def form_js(catalog: Catalog) -> tuple[str, str]:
    """Browser-side functions that restore the form from storage and store it back, so a reload
    keeps the prompt, the model and the settings (nothing here is a secret). A stored model the
    catalog no longer has is not restored."""
    fields = json.dumps(FORM_KEPT)
    models = json.dumps(list(catalog.models))
    load = (
        f"(f, ...now) => {fields}.map((k, i) => (f && f[k] != null && "
        f"(k !== 'model' || {models}.includes(f[k]))) ? f[k] : now[i])"
    )
    store = f"(...v) => Object.fromEntries({fields}.map((k, i) => [k, v[i] ?? null]))"
    return load, store


def offline_js(offline: list[tuple[str, int]]) -> str:
    """A browser-side function of the key boxes giving the offline banner: a service whose key
    the visitor entered is no longer offline. `offline`: (service label, its key box index)."""
    names = json.dumps(offline)
    return (
        f"(...keys) => {{ const left = {names}.filter(([, i]) => !(keys[i] || '').trim())"
        ".map(([n]) => n); if (!left.length) return ''; "
        "return '**Offline preview for ' + left.join(' and ') + ': images are placeholders — "
        "add a key to use the real service.**'; }"
    )

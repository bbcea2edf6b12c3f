"""The generation form: model, prompt, references, settings, keys, buttons.

Everything a control offers comes from the capability table; `reshape` is the one place that
turns a model into control updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from providers.capabilities import DEFAULT_MODEL, MODELS, ModelSpec, model_spec

VARIANTS_MAX = 4


@dataclass(frozen=True)
class Controls:
    model: gr.Dropdown
    model_info: gr.Markdown
    prompt: gr.Textbox
    references: gr.File
    reference_preview: gr.Gallery
    reference_urls: gr.Textbox
    settings_box: gr.Column
    aspect_ratio: gr.Dropdown
    resolution: gr.Radio
    output_format: gr.Radio
    routing: gr.Radio
    variants: gr.Slider
    generate: gr.Button
    stop: gr.Button
    defapi_key: gr.Textbox
    apixo_key: gr.Textbox


def references_label(spec: ModelSpec) -> str:
    return f"Reference images (up to {spec.max_references})"


def model_info(spec: ModelSpec) -> str:
    return f"*{spec.description}*"


def build_controls(key_notes: dict[str, str]) -> Controls:
    spec = model_spec(DEFAULT_MODEL)
    model = gr.Dropdown(
        choices=[(m.label, m.id) for m in MODELS.values()],
        value=spec.id,
        label="Model",
        elem_id="model",
    )
    info = gr.Markdown(model_info(spec), elem_id="model-info")
    prompt = gr.Textbox(
        label="Prompt",
        lines=4,
        max_lines=12,
        placeholder="Describe the image. Ctrl+Enter (⌘+Enter) generates.",
        elem_id="prompt",
    )
    references = gr.File(
        label=references_label(spec),
        file_count="multiple",
        file_types=["image", ".heic", ".heif"],
        allow_reordering=True,
        height=140,
        elem_id="references",
    )
    preview = gr.Gallery(
        label="Reference preview",
        columns=5,
        height=120,
        allow_preview=False,
        interactive=False,
        buttons=[],
        elem_id="reference-preview",
    )
    urls = gr.Textbox(
        label="Reference image URLs (optional, one https URL per line)",
        lines=1,
        max_lines=5,
        elem_id="reference-urls",
    )
    settings_box = gr.Column(visible=_takes_settings(spec), elem_id="settings")
    with settings_box, gr.Row():
        aspect = gr.Dropdown(
            choices=list(spec.aspect_ratios),
            value=spec.default_aspect_ratio,
            label="Aspect ratio",
            visible=spec.takes_aspect_ratio,
            elem_id="aspect-ratio",
        )
        resolution = gr.Radio(
            choices=list(spec.resolutions),
            value=spec.default_resolution,
            label="Resolution",
            visible=spec.takes_resolution,
            elem_id="resolution",
        )
    with settings_box, gr.Row():
        output_format = gr.Radio(
            choices=list(spec.output_formats),
            value=spec.default_output_format,
            label="Output format",
            visible=spec.takes_output_format,
            elem_id="output-format",
        )
        routing = gr.Radio(
            choices=list(spec.routings),
            value=spec.default_routing,
            label="Routing",
            info="apixo's provider choice: auto, cheaper (value) or official",
            visible=spec.takes_routing,
            elem_id="routing",
        )
    variants = gr.Slider(1, VARIANTS_MAX, value=1, step=1, label="Variants", elem_id="variants")
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    with gr.Accordion("Service keys", open=False):
        gr.Markdown(
            "Keys stay in this browser and are sent only with a generation. "
            "Without a key, a service runs as an offline preview."
        )
        defapi_key = gr.Textbox(
            label="defapi key (GemPix2, Gemini 2.5 Flash Image)",
            type="password",
            placeholder=key_notes.get("defapi", "dk-…"),
            elem_id="defapi-key",
        )
        apixo_key = gr.Textbox(
            label="apixo key (Nano Banana Pro)",
            type="password",
            placeholder=key_notes.get("apixo", ""),
            elem_id="apixo-key",
        )
    return Controls(
        model,
        info,
        prompt,
        references,
        preview,
        urls,
        settings_box,
        aspect,
        resolution,
        output_format,
        routing,
        variants,
        generate,
        stop,
        defapi_key,
        apixo_key,
    )


def _takes_settings(spec: ModelSpec) -> bool:
    return spec.takes_aspect_ratio or spec.takes_resolution or spec.takes_output_format


def settings_visibility(model_id: str) -> dict:
    """Hide the settings box when the model takes none (it would leave an empty gap)."""
    return gr.update(visible=_takes_settings(model_spec(model_id)))


def _keep(value: str | None, allowed: tuple[str, ...], default: str | None) -> str | None:
    return value if value in allowed else default


def reshape(
    model_id: str,
    aspect: str | None,
    resolution: str | None,
    output_format: str | None,
    routing: str | None,
) -> tuple[dict, ...]:
    """Control updates for `model_id`: what it cannot take is hidden or reset to its default."""
    spec = model_spec(model_id)
    return (
        gr.update(value=model_info(spec)),
        gr.update(label=references_label(spec)),
        gr.update(
            choices=list(spec.aspect_ratios),
            visible=spec.takes_aspect_ratio,
            value=_keep(aspect, spec.aspect_ratios, spec.default_aspect_ratio),
        ),
        gr.update(
            choices=list(spec.resolutions),
            visible=spec.takes_resolution,
            value=_keep(resolution, spec.resolutions, spec.default_resolution),
        ),
        gr.update(
            choices=list(spec.output_formats),
            visible=spec.takes_output_format,
            value=_keep(output_format, spec.output_formats, spec.default_output_format),
        ),
        gr.update(
            choices=list(spec.routings),
            visible=spec.takes_routing,
            value=_keep(routing, spec.routings, spec.default_routing),
        ),
    )

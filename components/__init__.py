"""Gradio builders and the page's event handlers."""

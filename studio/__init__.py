"""Kinetograph studio: the Gradio web app (``python app.py``), a front door over the engine.

``studio.jobs`` turns form fields into engine jobs and engine events into UI updates (no gradio
import); ``studio.app`` builds the ``gr.Blocks`` page and its named API endpoints. Nothing here is
imported by the engine or by ``import app``: gradio loads only when the studio starts.
"""

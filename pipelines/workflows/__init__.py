"""ComfyUI workflows without ComfyUI: run and check API-format graphs of the pack's nodes
(``runner``), and write the workflow that reproduces a job (``export``)."""

"""Editing latents (`edits`: single, sequential, progressive, layer-range) and rendering them (`render`)."""

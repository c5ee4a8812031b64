"""The browser editor behind `jaxedit serve`: one local page, sliders per attribute, no CDN.

- `state`: the edit a request asks for (face source, edits in touch order, truncation, layer
  range, preview flag), validated into an `EditRequest`; every bad field is a one-line
  `RequestError` carrying its HTTP status; `LatestOnly`, the newest request number per client.
- `render`: `Renderer`, which owns the generator (or the schematic stand-in) and the editors and
  turns an `EditRequest` into latents and PNGs with functions compiled once at start-up.
- `uploads`: photos and latent files sent by the page, decoded with size and pixel caps and held
  in memory under random ids.
- `server`: the HTTP server (standard library) and its routes; `responses`: the static page in
  `static/` (read once, served from memory), sweep GIFs, `.npy` bytes.
- `models`: what `jaxedit serve` loads (a run directory, or a generator and editors).
"""

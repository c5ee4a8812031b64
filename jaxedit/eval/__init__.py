"""The paper's evaluation (Table 1) and its baselines.

- `metrics`: classification accuracy, attribute preservation, identity preservation;
- `identity`: the cosine threshold at 0.1% false acceptance from random pairs;
- `baselines`: InterFaceGAN (linear SVM normals, conditional projection) and GANSpace (PCA of W);
- `protocol`: N latents per attribute edited to reverse it, with any labeller and identity
  embedder (the synthetic world's stand-ins or a generator plus real image models);
- `report`: report.json, the Markdown table, matched-accuracy comparison, PNG sweeps;
- `suite`: all of it for a set of editors, written to a directory (`jaxedit eval`, `python -m train`).
"""

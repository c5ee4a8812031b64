"""Torch-free converters of official PyTorch checkpoints to jaxedit model directories.

- `torch_reader`: read PyTorch checkpoint files (zip or legacy) without torch, executing nothing.
- `pickle_safe`: the restricted pickle machine those reads go through.
- `stylegan2`: rosinality / pSp / NVlabs StyleGAN2 generators -> a generator directory.
- `latent_transformer`: the official latent classifier and `tnet_*.pth.tar` -> an editors directory.
- `encoder`: the pSp / e4e image encoders (`psp_ffhq_encode.pt`, `e4e_ffhq_encode.pt`) -> an encoder directory.
"""

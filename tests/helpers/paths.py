"""Where the reference fixtures live (copied from the reference implementations' outputs)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STYLEGAN2_FIXTURES = FIXTURES / "stylegan2"
LATENT_FIXTURES = FIXTURES / "latent_transformer"
ENCODER_FIXTURES = FIXTURES / "encoders"

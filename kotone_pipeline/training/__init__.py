"""The LLM training script (a self-contained uv script) and where to find it for publishing."""

from pathlib import Path

# Published with each cycle's dataset commit and run from its pinned ``resolve/<sha>/train_lora.py`` URL.
TRAIN_SCRIPT: Path = Path(__file__).with_name("train_lora.py")

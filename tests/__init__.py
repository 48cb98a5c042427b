from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: tests start CLI children here

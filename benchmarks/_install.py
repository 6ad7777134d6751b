"""Install an older library into a folder of its own, for benchmarks that compare with it."""

from __future__ import annotations

import subprocess
import sys


def install_into(target: str, requirement: str, *, no_deps: bool = False) -> str | None:
    """``pip install --target``; ``None`` when it worked, else why it did not (for the report)."""
    extra = ["--no-deps"] if no_deps else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *extra, "--target", target, requirement],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"could not install {requirement}: {done.stderr.strip()[-200:]}"
    return None

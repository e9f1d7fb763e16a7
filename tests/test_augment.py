"""Member-like views of product shots (the head's training views) and the plan of which items get them."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from recommender import augment, images

from helpers import FASHION, demo_photos, needs_fashion, styles_rows


def product_shot() -> Image.Image:
    row = styles_rows(["Tshirts"], 1)[0]
    return images.load_image(FASHION / "images" / f"{row['id']}.jpg")[0]


@needs_fashion
def test_the_product_is_cut_out_of_its_white_background() -> None:
    shot = product_shot()
    mask = np.asarray(augment.product_mask(shot)) > 128
    assert 0.1 < mask.mean() < 0.9  # the t-shirt, not the whole picture and not nothing
    assert mask[shot.height // 2, shot.width // 2]  # the middle is garment
    assert not mask[0, 0] and not mask[-1, -1]  # the corners are background


def test_a_photo_with_a_scene_behind_it_has_no_cut_out() -> None:
    photo = images.load_image(demo_photos("t-shirt")[0])[0]  # a t-shirt lying on a floor
    assert augment.product_mask(photo) is None


def test_a_views_mask_shows_where_its_garment_was_pasted() -> None:
    shot = Image.new("RGB", (60, 80), (255, 255, 255))
    shot.paste((200, 20, 20), (10, 10, 50, 70))  # a red garment on a white studio background
    for seed in range(12):  # seeds 3, 8, 9 and 10 zoom in; 0, 1, 5 and 7 mirror the view
        view, where = augment.member_view_and_mask(shot, random.Random(seed))
        assert np.array_equal(np.asarray(view), np.asarray(augment.member_view(shot, random.Random(seed))))
        assert where.size == view.size and where.mode == "L"
        on, rgb = np.asarray(where) > 200, np.asarray(view, np.float32)
        assert 0.05 < on.mean() < 1.0  # the garment is 45-95 % of the frame's side, or zoomed into
        red = rgb[..., 0] - rgb[..., 1:].mean(-1) > 50
        assert red[on].mean() > 0.9, seed  # under the mask: the garment, wherever the view moved it


@needs_fashion
def test_views_are_seeded_member_like_pictures() -> None:
    shot = product_shot()
    a = augment.member_view(shot, random.Random(1))
    b = augment.member_view(shot, random.Random(1))
    c = augment.member_view(shot, random.Random(2))
    assert a.size == (augment.SIDE, augment.SIDE) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))  # the same seed, the same view
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    # the white studio is gone: the corners are a background, not pure white
    corners = np.asarray(a)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < 250).any()
    bg = np.asarray(augment.background_view(random.Random(3)))
    assert bg.shape == (augment.SIDE, augment.SIDE, 3) and bg.std() > 0


def test_the_view_plan_covers_every_item_or_every_category_within_the_budget() -> None:
    cats = ["a"] * 50 + ["b"] * 5 + ["c"] * 945
    assert augment.view_plan(cats[:55], max_views=200, per_item=2) == [i for i in range(55) for _ in range(2)]
    plan = augment.view_plan(cats, max_views=300, per_item=2, seed=0)
    assert len(plan) <= 300 and plan == sorted(plan)
    assert {cats[i] for i in plan} == {"a", "b", "c"}  # the rare category keeps its views
    assert plan == augment.view_plan(cats, max_views=300, per_item=2, seed=0)
    with pytest.raises(ValueError):
        augment.view_plan(cats, max_views=0)


def test_member_views_follow_their_owners() -> None:
    pics = [Image.new("RGB", (60, 80), (255, 255, 255)), Image.new("RGB", (60, 80), (200, 0, 0))]
    views = augment.member_views(pics, [0, 1, 1], seed=0)
    assert len(views) == 3 and all(v.size == (augment.SIDE, augment.SIDE) for v in views)

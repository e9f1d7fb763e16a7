"""`lookalike demo`: the real bot, offline, against the local Discord sandbox.

No token and no internet: a sandbox Discord runs on 127.0.0.1, the real discord.py bot connects to
it, and the bundled CC0 clothing photos (10 per class) become the shared default catalogue in a
temporary database. Then members post held-out photos, ask /similar, and a moderator adds an item
while a member is refused. The bot's replies are printed as text and their images saved.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import bot as bot_package
from recommender.config import DEFAULT_GUILD, load_settings
from recommender.engine import Recommender

from .app import create_bot
from .cogs.utils.options import BotOptions

PER_CLASS = 10  # imported per class; the rest are held out as query photos
# the offline backbone for members' photos (docs/BENCHMARKS.md: street-to-shop precision@10 0.59 against lite0's
# 0.46); on the demo's own held-out photos 8 of 10 predicted right against lite0's 7, the black jacket an outwear
DEMO_MODEL = "efficientnet-lite2"


def demo_root() -> Path:
    return Path(bot_package.__file__).resolve().parents[1] / "tests" / "data" / "clothing-demo"


def split(images: Path) -> tuple[set[str], dict[str, list[Path]]]:
    """(item ids imported, held-out photos per class)."""
    keep: set[str] = set()
    held: dict[str, list[Path]] = {}
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        keep |= {f"{folder.name}/{p.stem}" for p in photos[:PER_CLASS]}
        held[folder.name] = photos[PER_CLASS:]
    return keep, held


def as_text(markdown: str) -> str:
    """Discord markdown -> plain text for a terminal."""
    text = re.sub(r"\[([^\]]*)\]\((https?://[^)]+)\)", r"\1 <\2>", markdown)
    text = re.sub(r"^-# ", "", text, flags=re.M)
    text = text.replace("**", "").replace("`", "")
    return re.sub(r"\\([*_~`|>\[\]()])", r"\1", text)


@dataclass
class Transcript:
    out_dir: Path
    stream: TextIO
    quiet: bool
    replies: int = 0
    saved: list[Path] = field(default_factory=list)
    top1: list[tuple[str, str | None]] = field(default_factory=list)  # (true category, first match's)
    predicted: list[tuple[str, str | None]] = field(default_factory=list)  # (true category, predicted)
    names: dict[str, str] = field(default_factory=dict)  # "<#id>" / "<@id>" -> "#name" / "@name"
    posts: list[tuple[bytes, str, bytes | None]] = field(default_factory=list)  # (query photo, verdict, reply grid)

    def text(self, markdown: str) -> str:
        return as_text(re.sub(r"<[#@]&?\d+>", lambda m: self.names.get(m.group(0), m.group(0)), markdown))

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def show(self, message: Any, *, truth: str | None = None, query: bytes | None = None) -> None:
        """Print one bot message (content, embeds) and save its files."""
        self.replies += 1
        flag = " (only the member sees this)" if message.ephemeral else ""
        self.say(f"  lookalike replied{flag}:")
        for line in self.text(message.content or "").splitlines():
            self.say(f"    {line}")
        first_category = predicted = None
        for embed in message.embeds:
            m = re.match(r"Looks like: (.+) \(\d+%\)$", embed.get("title") or "")
            predicted = predicted or (m.group(1) if m else None)
            for key in ("author", "title"):
                part = embed.get(key)
                text = part.get("name") if isinstance(part, dict) else part
                if text:
                    self.say(f"    {self.text(text)}")
            for line in self.text(embed.get("description") or "").splitlines():
                self.say(f"      {line}")
                m = re.match(r"\s*1\. .*? · (.+?) · ", line)
                if m and first_category is None:
                    first_category = m.group(1)
            for f in embed.get("fields") or []:
                self.say(f"      {self.text(f['name'])}: {self.text(f['value'])}")
            if embed.get("footer"):
                self.say(f"      ({embed['footer']['text']})")
        for a in message.attachments:
            path = self.out_dir / f"{len(self.saved) + 1:02d}-{a.filename}"
            path.write_bytes(a.data)
            self.saved.append(path)
            self.say(f"    [image saved: {path}]")
        if truth is not None:
            self.top1.append((truth, first_category))
            self.predicted.append((truth, predicted))
        if query is not None:
            title = next((e.get("title") for e in message.embeds if e.get("title")), "") or ""
            self.posts.append((query, self.text(title), message.attachments[0].data if message.attachments else None))
        self.say()

    def overview(self) -> Path | None:
        """One picture of the photo posts: the member's photo, the bot's verdict, its matches."""
        if not self.posts:
            return None
        from PIL import Image, ImageDraw, ImageFont

        h, gap, text_w = 120, 8, 230
        rows = []
        for query, title, grid in self.posts:
            q = Image.open(io.BytesIO(query)).convert("RGB")
            q.thumbnail((h, h))
            g = Image.open(io.BytesIO(grid)).convert("RGB") if grid else Image.new("RGB", (1, h), "white")
            g = g.resize((max(1, g.width * h // g.height), h))
            row = Image.new("RGB", (h + text_w + g.width + 2 * gap, h), (49, 51, 56))
            row.paste(q, ((h - q.width) // 2, (h - q.height) // 2))
            draw = ImageDraw.Draw(row)
            draw.text((h + gap, h // 2 - 22), "posted photo", fill=(181, 186, 193), font=ImageFont.load_default(size=14))
            draw.text((h + gap, h // 2), title, fill=(255, 255, 255), font=ImageFont.load_default(size=16))
            row.paste(g, (h + text_w + gap, 0))
            rows.append(row)
        sheet = Image.new("RGB", (max(r.width for r in rows), len(rows) * (h + gap) - gap), (30, 31, 34))
        for i, r in enumerate(rows):
            sheet.paste(r, (0, i * (h + gap)))
        path = self.out_dir / "overview.png"
        sheet.save(path, optimize=True)
        return path


async def run_demo(out_dir: Path, model: str | None = None, quiet: bool = False, *, stream: TextIO | None = None) -> int:
    """Run the offline demo with ``model`` (None: :data:`DEMO_MODEL`); returns an exit code (0: every step
    answered as expected)."""
    model = model or DEMO_MODEL
    from .sandbox import DiscordSandbox

    stream = stream or sys.stdout
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = demo_root() / "images"
    keep, held = split(images)
    t = Transcript(out_dir, stream, quiet)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lookalike-demo-") as tmp:
        settings = load_settings(env={}, db=Path(tmp) / "demo.db", model=model, retrain_delay_s=0.5)
        options = BotOptions.from_settings(settings, env={}, cooldown_rate=100, cooldown_per_s=1.0, sync_guilds=())
        t.say(f"Loading the {model} model and importing {len(keep)} catalogue photos ({PER_CLASS} per class)…")
        rec = await Recommender.open(settings)
        try:
            records = [r for r in rec.records(images) if r.item_id in keep]
            summary = await rec.import_items(records, guild_id=DEFAULT_GUILD, actor="demo", total=len(records))
            await rec.retrain(DEFAULT_GUILD)
            t.say(f"Shared default catalogue: {summary.added} items in {len(held)} categories ({summary.seconds:.1f}s).\n")
            async with DiscordSandbox() as sandbox:
                sandbox.configure_discord()
                code = await _scenario(sandbox, rec, settings, options, held, t)
        finally:
            await rec.close()
    overview = t.overview()
    top1 = sum(1 for truth, got in t.top1 if truth == got)
    predicted = sum(1 for truth, got in t.predicted if truth == got)
    print(
        f"Demo finished in {time.perf_counter() - t0:.0f}s with {model}: {t.replies} bot replies. Of {len(t.top1)} "
        f"held-out photos, the top match had the right category for {top1} and the predicted category was right "
        f"for {predicted} ({len(t.top1) - sum(1 for _, p in t.predicted if p)} not sure). "
        f"{len(t.saved)} reply images saved in {out_dir}"
        + (f"; the photo posts at a glance: {overview}" if overview else "")
        + ".",
        file=stream,
        flush=True,
    )
    return code


async def _scenario(
    sandbox: Any, rec: Recommender, settings: Any, options: BotOptions, held: dict[str, list[Path]], t: Transcript
) -> int:
    bot_user = sandbox.create_bot_user("lookalike")
    owner = sandbox.create_user("shop-owner")
    guild = sandbox.create_guild("Demo Shop", owner=owner)
    photos = sandbox.create_text_channel(guild, "photos")
    mia, sam = sandbox.create_user("mia"), sandbox.create_user("sam")
    sandbox.add_member(guild, mia)
    sandbox.add_member(guild, sam)
    t.names.update({f"<#{photos.id}>": f"#{photos.name}", **{f"<@{u.id}>": f"@{u.name}" for u in (owner, mia, sam)}})
    bot = create_bot(rec, settings, options, guild_ready_timeout=0.1)
    runner = asyncio.create_task(bot.start(bot_user.token), name="demo-bot")
    try:
        await sandbox.wait_for_ready(bot_user, timeout=30)
        await sandbox.wait_for_commands(bot_user, "similar", "catalog", "config")
        t.say(f"The bot is online in the sandbox server '{guild.name}'.\n")

        async def slash(
            user: Any, command: str, options: dict[str, Any] | None = None, files: dict[str, Any] | None = None
        ) -> list[Any]:
            def value(v: Any) -> str:
                return f"#{v.name}" if hasattr(v, "guild_id") and hasattr(v, "name") else str(v)

            shown = " ".join(
                [
                    f"/{command}",
                    *(f"{k}:{value(v)}" for k, v in (options or {}).items()),
                    *(f"{k}:{v[0]}" for k, v in (files or {}).items()),
                ]
            )
            t.say(f"── {user.name} uses {shown}")
            inter = await sandbox.invoke_slash(guild, photos, user, command, options, attachments=files)
            await inter.wait_done(timeout=60)
            await asyncio.sleep(0.05)
            for m in inter.messages:
                t.show(m)
            return inter.messages

        await slash(owner, "config watch", {"channel": photos})
        for category, paths in held.items():
            photo = paths[0]
            t.say(f"── mia posts a photo of {category} in #{photos.name} ({photo.name})")
            msg = await sandbox.post_message(photos, mia, attachments=[(photo.name, photo.read_bytes(), "image/jpeg")])
            reply = await sandbox.wait_for_bot_message(lambda m, msg=msg: m.reference_id == msg.id, timeout=60)
            t.show(reply, truth=category, query=photo.read_bytes())
        query = held["shoes"][-1]
        await slash(sam, "similar", {"k": 3}, {"image": (query.name, query.read_bytes(), "image/jpeg")})
        some_item = (await rec.list_items(guild_id=DEFAULT_GUILD, category="dress", per_page=1))[0][0]
        await slash(sam, "similar-item", {"item": some_item.item_id, "k": 3})
        await slash(
            mia,
            "catalog add",
            {"name": "Canvas sneaker", "category": "shoes"},
            {"image": (query.name, query.read_bytes(), "image/jpeg")},
        )
        await slash(
            owner,
            "catalog add",
            {"name": "Canvas sneaker", "category": "shoes", "price": 59.99, "url": "https://shop.example/sneaker"},
            {"image": (query.name, query.read_bytes(), "image/jpeg")},
        )
        problems = [str(v) for v in sandbox.violations] + sandbox.unknown_routes
        for p in problems:
            print(f"sandbox: {p}", file=t.stream)
        return 1 if problems else 0
    except TimeoutError as e:
        print(f"The demo stopped: {e}", file=t.stream)
        return 1
    finally:
        await bot.close()
        await asyncio.wait_for(runner, 30)

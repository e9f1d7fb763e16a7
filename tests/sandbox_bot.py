"""One bot process against a Discord sandbox: discord.py is pointed at the sandbox's URLs (the only
difference from production), then the bot runs exactly as `lookalike run ARGS` runs it.

    DISCORD_TOKEN=... python tests/sandbox_bot.py API_URL GATEWAY_URL CDN_URL --shard-count 2 --shard-ids 0
"""

from __future__ import annotations

import sys

from bot.cli import main
from bot.sandbox import DiscordConfig

if __name__ == "__main__":
    api_url, gateway_url, cdn_url, *run_args = sys.argv[1:]
    DiscordConfig(api_url, gateway_url, cdn_url)
    sys.exit(main(["run", *run_args]))

"""The player's side: pygame client, keymaps (data), keys -> action (pure functions), HUD, headless bot.

Never imports torch: frames arrive from the engine server over ZeroMQ (`input.net`). The modules that
draw (`input.window`, `input.app`, `input.replay`, `input.hud.draw_hud`) import pygame; `input.keymap`,
`input.net` and `input.bot` do not.
"""

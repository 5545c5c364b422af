"""The heads-up display: what the numbers mean, drawn over the game.

    FPS         frames shown per second (the model's pace, as the player sees it)
    latency     action-to-display: from polling the keys and sending that frame's action to showing the
                frame it produced, p50 / p95 over the last frames
    key         key-to-display: from the moment the held keys changed to the first frame made with the
                new keys on screen; it also counts the wait for the frame being generated when the key
                went down (up to one frame period more than `latency`)
    KV          the session's cached keys/values against its budget, then bytes per memory region
                (sink, recent, mid, retrieved, ...) as the memory manager reports them
    policy      the memory policy in use (P cycles it live)
    REC         the session is being recorded; PAUSED: generation is paused

`hud_lines` is a pure function (tested without a display); `draw_hud` renders the lines with pygame.
"""

from __future__ import annotations

from typing import Mapping


def fmt_bytes(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _regions(memory: Mapping) -> dict[str, float]:
    regions = memory.get("bytes_per_region") or memory.get("regions") or {}
    if not isinstance(regions, Mapping):
        return {}
    out = {}
    for name, value in regions.items():
        if isinstance(value, Mapping):  # {"bytes": ..} or per-tier {"bf16": .., "int8": ..}
            value = value.get("bytes", sum(v for v in value.values() if isinstance(v, (int, float))))
        if isinstance(value, (int, float)) and value:
            out[str(name)] = value
    return out


def hud_lines(*, fps: float, target_fps: float | None = None, latency_p50: float, latency_p95: float, stats: Mapping | None,
              key_latency: tuple[float, float] | None = None, recording: bool = False, paused: bool = False,
              extra: str = "") -> list[str]:
    """The HUD text, one string per line, from the client's counters and the server's stats message
    (`target_fps`: the rate the client keeps to, None when it asks as fast as frames come)."""
    stats = stats or {}
    memory = stats.get("memory") or {}
    kv = memory.get("kv_bytes", stats.get("kv_bytes"))
    budget = memory.get("budget_bytes") or stats.get("budget_bytes")
    key = f"   key p50 {key_latency[0]:4.0f} p95 {key_latency[1]:4.0f} ms" if key_latency else ""
    pace = f" of {target_fps:.1f}" if target_fps else ""
    lines = [f"FPS {fps:5.1f}{pace}   latency p50 {latency_p50:5.0f} ms  p95 {latency_p95:5.0f} ms{key}",
             f"KV {fmt_bytes(kv)} / {fmt_bytes(budget) if budget else 'no budget'}   policy {stats.get('policy') or memory.get('policy') or '?'}"]
    regions = _regions(memory)
    if regions:
        lines.append("  ".join(f"{name} {fmt_bytes(v)}" for name, v in regions.items()))
    flags = [f for f, on in (("REC", recording), ("PAUSED", paused)) if on]
    if flags or extra:
        lines.append("  ".join(flags + ([extra] if extra else [])))
    return lines


def draw_hud(surface, lines: list[str], font, *, origin=(6, 6)) -> None:
    """Draw `lines` top-left on `surface` over a translucent box."""
    import pygame

    rendered = [font.render(line, True, (255, 255, 255)) for line in lines]
    if not rendered:
        return
    width = max(r.get_width() for r in rendered) + 8
    height = sum(r.get_height() for r in rendered) + 6
    box = pygame.Surface((width, height), pygame.SRCALPHA)
    box.fill((0, 0, 0, 160))
    surface.blit(box, origin)
    y = origin[1] + 3
    for r in rendered:
        surface.blit(r, (origin[0] + 4, y))
        y += r.get_height()

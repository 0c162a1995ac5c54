"""nodeprobe: keeps nodes healthy when their container runtime goes bad."""

"""``edgevision watch``: the long-running multi-camera service (its config and its event store)."""

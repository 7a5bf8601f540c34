"""The zoo catalogue: one file per model family, registered on import (nothing lists them)."""

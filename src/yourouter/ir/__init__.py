"""The gateway's dialect-neutral vocabulary: errors now, the canonical chat IR as dialects are added."""

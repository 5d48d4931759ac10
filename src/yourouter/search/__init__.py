"""Web search: Google Custom Search-compatible queries and answers, served by several engines."""

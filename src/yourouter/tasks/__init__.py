"""Long-running work: video generation tasks and their poller."""

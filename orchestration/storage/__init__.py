"""Where results live: filesystems and retries."""

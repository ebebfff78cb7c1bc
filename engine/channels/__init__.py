"""Channel providers: how a rendered message reaches a user on one channel."""

"""The road of a change: outbox, dispatcher and the one retry policy."""

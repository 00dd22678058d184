"""Built-in commands, written as ordinary plugins on the public hooks."""

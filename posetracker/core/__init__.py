"""The vocabulary every layer shares: joint schemas, pose value types, errors, file helpers, config loading."""

"""Connections to the outside: embedded broker and Redis, and how to reach real ones."""

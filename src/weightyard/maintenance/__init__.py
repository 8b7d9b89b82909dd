"""Operating a hub's storage: start-up checks, garbage collection, consistency checks and backups.

Modules are imported where used (`startup` by the hub itself, the others by their CLI commands), so that
opening a hub never pays for the rest.
"""

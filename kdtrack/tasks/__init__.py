"""The library functions behind each command."""

"""The documentation site's build helpers: generated reference pages and benchmark tables."""

"""An example curate plugin: one stage, `caps_filter`, registered by entry point."""

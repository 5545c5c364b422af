"""An example third-party world model for reverie (see `reverie_example_plugin.model`)."""

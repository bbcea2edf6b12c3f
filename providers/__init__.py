"""Everything that talks to an image service: capabilities, clients, errors, the watch loop."""

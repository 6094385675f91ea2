"""Model weights: checkpoint references (path, URL, "fixture"), random-init fixtures, the trained fixture's
training recipe, and the import shim that lets mmpose load without its compiled extras."""

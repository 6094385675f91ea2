"""Model weights: checkpoint references (path, URL, "fixture"), random-init fixtures, and the import shim that
lets mmpose load without its compiled extras. Training the fixture is bmpose.experiments.train."""

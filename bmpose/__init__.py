"""bmpose: mmpose top-down pose models to Sophon bmodels."""

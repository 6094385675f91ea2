"""`--precision auto`: a search (bmpose.convert.auto) measured by evaluate/ (agreement with float), per model kind."""

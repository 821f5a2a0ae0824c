"""The HTTP surface: thin views that parse, authorise, call the store and serialise."""

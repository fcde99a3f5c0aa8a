"""Luigi tasks: thin wrappers that wire cellpipe library functions to targets."""

# Stand-in for a Python file beside the weights that auto_map does not name: dsconv carries
# every *.py of a model directory, named or not. Never run.

"""A fourth target that lives entirely in this folder: it proves that adding a target takes one
folder and one registry line (an entry point, or `deploykit.targets.REGISTRY` in-process) and no
change anywhere else in deploykit. Its runtime is numpy, run in a child process like the real
runtimes. It is a small but real runtime (it evaluates the model's layers itself), not a stand-in
for any deploykit target."""

"""The TF Serving target: `target.py` (prepare, convert, run), `settings.py` (`[serving]`,
`--base-image/--push/--no-container`), `repo.py` (the model repository), `container.py` (the Docker
image and container lifecycle, push), `rest.py` (the REST client and load figures)."""

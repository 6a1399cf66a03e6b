"""The TF.js target: `target.py` (convert, run), `settings.py` (the `[js]` table and `--js-*`
options), `rewrite.py` (exact preflight rewrites of ops TF.js lacks), `quantize.py` (quantized
bundles re-written from the float32 one), `node.py` (the Node runtime: binary, npm cache, tensor
files, bundle safety) and `select.py` (`--js-quantize auto`). The Node/browser harness itself lives
in `targets/js/`."""

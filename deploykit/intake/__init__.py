"""Model intake, in the order a build reads a model: `sniff` (identify from bytes), `policy` (vet),
`loader` (load into one `LoadedModel`), `data` (parity and calibration inputs) and `example` (the
bundled digits example)."""

"""Model families: one file each, holding pre-processing, decoding and the zoo entries."""

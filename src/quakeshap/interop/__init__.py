"""Interoperability: files of the study and of other tools, read into quakeshap's artefacts."""

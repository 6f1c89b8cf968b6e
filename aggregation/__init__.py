"""Indicators and their releases: tables with margins, disclosure control, read formats."""
